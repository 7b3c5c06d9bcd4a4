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


def test_each_concept_is_paired_with_its_own_class_images_as_the_extension_does(engine):
    """The extension's dataset follows each instance image with a class image of its own concept (none for a
    concept without class images); the trainer's pairs and loss show the same on the tiny model."""
    import torch

    from engine.training.dreambooth import ConceptExample, DreamboothOptions, DreamboothTrainer
    from engine.training.loop import LoopOptions, NoiseObjective

    model = engine.base_model("tiny")
    channels = model.unet.config.in_channels

    def examples(caption: str, concept: int, count: int, start: float = 0.0) -> list[ConceptExample]:
        return [
            ConceptExample(torch.full((channels, 8, 8), start + i / 10), caption, None, concept)
            for i in range(count)
        ]

    dogs, cats, birds = examples("zkd", 0, 2), examples("zkc", 1, 2), examples("zkb", 2, 1)
    class_dogs, class_birds = examples("a dog", 0, 3, -1.0), examples("a bird", 2, 2, 1.0)
    options = DreamboothOptions("pairs", LoopOptions(1, "1e-5"), prior_loss_weight=0.5, resolution=64)
    trainer = DreamboothTrainer(model, options, [*class_birds, *class_dogs])
    pairs = trainer.prior_pairs([cats[0], dogs[0], birds[0], dogs[1]], torch.Generator().manual_seed(1))
    assert [pair.caption for pair in pairs] == ["a dog", "a dog", "a bird"]  # concepts in order
    assert all(any(p is c for c in class_dogs) for p in pairs[:2]) and any(pairs[2] is c for c in class_birds)
    assert trainer.prior_pairs(cats, torch.Generator()) == []  # no class prompt: no class images

    states, pooled = trainer.encode(["zkc", "zkc"])
    alone = trainer.loss(NoiseObjective(model, 3), cats)  # concept 1 alone: no prior term at all
    assert torch.equal(alone, NoiseObjective(model, 3).loss(trainer.unet, cats, states, pooled=pooled))

    objective = NoiseObjective(model, 3)
    paired = trainer.prior_pairs(dogs, objective.generator)  # what loss() draws first, from the same seed
    states, pooled = trainer.encode([e.caption for e in [*dogs, *paired]])
    losses = objective.loss(trainer.unet, [*dogs, *paired], states, per_example=True, pooled=pooled)
    expected = losses[:2].mean() + 0.5 * losses[2:].mean()
    assert torch.allclose(trainer.loss(NoiseObjective(model, 3), dogs), expected)
    assert losses[2:].mean() > 0 and not torch.allclose(losses[:2].mean(), expected)


def test_generated_class_images_go_into_the_class_folder_whole_and_never_over_a_file(tmp_path):
    from PIL import Image

    from jobs.training_concepts import publish_class_images, write_new

    work = tmp_path / "work" / "class" / "0"
    work.mkdir(parents=True)
    for index, colour in enumerate(("red", "blue")):
        Image.new("RGB", (8, 8), colour).save(work / f"{index:04d}.png")
    files = [work / "0000.png", work / "0001.png"]
    target = tmp_path / "dogs" / "new"
    first = publish_class_images(files[:1], "a dog", target, work, 0)
    assert first == f"concepts[0]: 1 generated class image(s) written into {target}"
    (written,) = target.glob("*.png")
    assert (
        written.read_bytes() == files[0].read_bytes() and written.with_suffix(".txt").read_text() == "a dog"
    )
    assert publish_class_images(files, "a dog", target, work, 0) == first  # once per job (its marker)
    (work / "published").unlink()
    written.write_bytes(b"someone else's")  # same name: left alone, the other one still written
    note = publish_class_images(files, "a dog", target, work, 0)
    assert note.endswith(f"1 generated class image(s) written into {target}")
    assert written.read_bytes() == b"someone else's" and len(list(target.glob("*.png"))) == 2
    assert write_new(tmp_path / "x", b"1") and not write_new(tmp_path / "x", b"2")
    assert (tmp_path / "x").read_bytes() == b"1" and [p.name for p in tmp_path.glob(".x*")] == []

    (work / "published").unlink()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    note = publish_class_images(files, "a dog", blocked / "dogs", work, 0)
    assert note.startswith("concepts[0]: class images kept in the job's work folder; cannot write into")


def test_a_concepts_list_from_discord_keeps_its_class_images_in_the_work_folder(settings):
    import io

    from PIL import Image

    from commands.training import images_from_files
    from commands.training_concepts import concept_params, concepts_from_zip

    data = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(data, format="PNG")
    text = json.dumps(
        [
            {
                "instance_data_dir": "dog",
                "class_data_dir": "dogs",
                "class_prompt": "a dog",
                "num_class_images_per": 2,
            }
        ]
    )
    (item,), notes = concepts_from_zip(text, [("dog/a.png", data.getvalue())], settings, images_from_files)
    assert item.class_folder == ""
    assert notes == [
        "concepts[0].class_data_dir: generated class images stay in the job's work folder "
        "(a concepts list from Discord cannot write to the server's disk)"
    ]
    assert concept_params([item], settings.data_dir / "jobs" / "inputs")["concepts"][0]["class_folder"] == ""
