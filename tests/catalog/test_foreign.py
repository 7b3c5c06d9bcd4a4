"""NovelAI images turned into infotext exactly as AUTOMATIC1111 turns them.

Pinned from AUTOMATIC1111/stable-diffusion-webui `modules/images.py`, `read_info_from_image`, the branch for
`Software == "NovelAI"`, at 05933840f0676dd1a90a7e2ad3f2a0672624b2cd (the same at
08c3caec1eb2b1aaebf045e691c7465d4161476c): Description, then `Negative prompt: <uc>`, then Steps, Sampler
(`samplers_map.get(sampler, "Euler a")`), CFG scale, Seed from the Comment JSON, `Size: <image width>x<image
height>` and `Clip skip: 2, ENSD: 31337`. Sampler aliases from `modules/sd_samplers_kdiffusion.py` at
01a40c62556b8cf3beb418e382760dd21811d3b2 (`samplers_k_diffusion`: name, function, aliases).
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from catalog.foreign import foreign_infotext
from engine.infotext import parse_infotext
from tests.corpus import CORPUS

NOVELAI = CORPUS / "NovelAI" / "novelai1_cropped.png"
UC = (
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry"
)
# What A1111 shows for tests/data/corpus/generator-metadata/NovelAI/novelai1_cropped.png (1x1 pixels).
A1111_INFOTEXT = (
    "masterpiece, best quality,  cat, space, icon\n"
    f"Negative prompt: {UC}, {UC}\n"
    "Steps: 50, Sampler: Euler a, CFG scale: 10.0, Seed: 2253955223, Size: 1x1, Clip skip: 2, ENSD: 31337"
)


def test_the_corpus_novelai_image_reads_as_a1111_reads_it():
    with Image.open(NOVELAI) as image:
        assert foreign_infotext(dict(image.info), image.size) == A1111_INFOTEXT
    info = parse_infotext(A1111_INFOTEXT)
    assert (info.params["Size"], info.params["Clip skip"], info.params["ENSD"]) == ("1x1", "2", "31337")


def _chunks(**comment: object) -> dict[str, str]:
    base = {"steps": 28, "sampler": "k_euler", "seed": 7, "scale": 11, "uc": ""}
    return {"Software": "NovelAI", "Description": "a fox", "Comment": json.dumps({**base, **comment})}


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [
        ("k_euler_ancestral", "Euler a"),
        ("k_euler", "Euler"),
        ("k_dpmpp_2m", "DPM++ 2M"),
        ("ddim", "DDIM"),
        ("k_dpm_2_ancestral", "Euler a"),  # not an A1111 alias (its is k_dpm_2_a): A1111 falls back
        ("ddim_v3", "Euler a"),
    ],
)
def test_novelai_samplers_map_as_in_a1111(sampler, expected):
    text = foreign_infotext(_chunks(sampler=sampler), (832, 1216))
    assert text == (
        f"a fox\nNegative prompt: \nSteps: 28, Sampler: {expected}, CFG scale: 11, Seed: 7, Size: 832x1216, "
        "Clip skip: 2, ENSD: 31337"
    )


def test_the_image_size_wins_over_the_comment_and_a_broken_comment_reads_as_nothing():
    assert "Size: 64x32," in foreign_infotext(_chunks(width=512, height=768), (64, 32))
    assert "Size: 512x768," in foreign_infotext(_chunks(width=512, height=768))  # no image at hand
    missing_seed = {
        **_chunks(),
        "Comment": json.dumps({"steps": 1, "sampler": "k_euler", "scale": 1, "uc": ""}),
    }
    assert foreign_infotext(missing_seed, (8, 8)) is None
    assert foreign_infotext({**_chunks(), "Comment": "not json"}, (8, 8)) is None
