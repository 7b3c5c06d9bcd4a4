"""The Dreambooth extension's concepts list: its field names read, bad values refused by key, notes for the rest."""

from __future__ import annotations

import json

import pytest

from core.errors import InvalidRequest
from engine.training.concepts import Concept, read_concepts


def test_the_extensions_fields_are_read_and_the_rest_noted():
    text = json.dumps(
        {
            "concepts_list": [
                {
                    "instance_data_dir": "dog",
                    "instance_prompt": "photo of zwx [filewords]",
                    "class_data_dir": "dogs",
                    "class_prompt": "photo of a dog",
                    "num_class_images_per": 20,
                    "class_infer_steps": 30,
                    "class_guidance_scale": 6,
                    "save_sample_prompt": "zwx on the beach",
                    "n_save_sample": 2,
                    "sample_seed": 42,
                    "class_token": "dog",
                    "save_sample_template": "",
                    "flavour": "x",
                },
                {"instance_data_dir": "cat"},
            ]
        }
    )
    (dog, cat), notes = read_concepts(text)
    assert dog.prior_preservation and dog.class_guidance_scale == 6.0 and dog.n_save_sample == 2
    assert dog.caption("zwx", "sitting") == "photo of zwx sitting"
    assert cat == Concept("cat") and not cat.prior_preservation and cat.caption("n", "a cat") == "a cat"
    assert notes == [
        "concepts[0].class_token is not used by Salon; ignored",
        "concepts[0]: unknown key 'flavour' ignored",
    ]
    assert read_concepts(json.dumps({"instance_data_dir": "one"}))[0] == [Concept("one")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([{"instance_prompt": "x"}], "concepts[0].instance_data_dir: is missing"),
        (
            [{"instance_data_dir": "a"}, {"instance_data_dir": ""}],
            "concepts[1].instance_data_dir: is missing",
        ),
        (
            [{"instance_data_dir": "a", "num_class_images_per": "many"}],
            "num_class_images_per: 'many' is not a",
        ),
        ([{"instance_data_dir": "a", "num_class_images_per": 2.5}], "is not a whole number"),
        ([{"instance_data_dir": "a", "class_infer_steps": 0}], "class_infer_steps: 0 is not from 1 to 150"),
        ([{"instance_data_dir": "a", "n_save_sample": 99}], "n_save_sample: 99 is not from 0 to 8"),
        ([{"instance_data_dir": "a", "instance_prompt": 3}], "instance_prompt: must be text"),
        ([{"instance_data_dir": "a", "save_guidance_scale": 0}], "save_guidance_scale"),
        ([], "expected a JSON list of concepts"),
        (["a"], "concepts[0]: each concept must be a JSON object"),
    ],
)
def test_bad_concepts_are_refused_by_key(data, message):
    with pytest.raises(InvalidRequest) as refused:
        read_concepts(json.dumps(data))
    assert message in str(refused.value), str(refused.value)


def test_not_json_is_refused():
    with pytest.raises(InvalidRequest, match="concepts: not a JSON file"):
        read_concepts(b"\xff{")


def test_zip_folders_are_names_inside_the_zip_only(settings):
    from commands.training import images_from_files
    from commands.training_concepts import concepts_from_zip

    text = json.dumps([{"instance_data_dir": "../etc"}])
    with pytest.raises(InvalidRequest, match="without '..'"):
        concepts_from_zip(text, [], settings, images_from_files)
    text = json.dumps([{"instance_data_dir": "nowhere"}])
    with pytest.raises(InvalidRequest, match="concepts\\[0\\].instance_data_dir: 'nowhere' is not a folder"):
        concepts_from_zip(text, [("elsewhere/a.png", b"")], settings, images_from_files)
