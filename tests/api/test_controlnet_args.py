"""sd-webui-controlnet's API units (`alwayson_scripts.controlnet.args`) into Salon's units: names and numbers
for the modes, enabled units only, the image decoded, refusals naming the field."""

from __future__ import annotations

import pytest
from PIL import Image

from api.controlnet import pixel_perfect_resolution, script_units
from core.errors import InvalidRequest
from engine.requests import ControlMode, ControlResize

IMAGE = Image.new("RGB", (8, 8), "white")


def decode(data: str, field: str) -> Image.Image:
    assert data == "aGVsbG8=" and field.endswith(".image")
    return IMAGE


def test_units_with_sd_webui_controlnet_fields():
    args = [
        {"enabled": True, "model": "cn [abc]", "module": "canny", "image": "aGVsbG8=", "weight": 0.5,
         "resize_mode": 2, "control_mode": "My prompt is more important", "guidance_end": 0.6,
         "threshold_a": 50, "processor_res": 256, "low_vram": False, "pixel_perfect": False},
        {"enabled": False, "model": "skipped"},
        {"model": "other", "resize_mode": "Just Resize", "control_mode": 2},
    ]  # fmt: skip
    first, second = script_units({"ControlNet": {"args": args}}, decode)
    assert (first.model, first.module, first.weight, first.guidance_end) == ("cn [abc]", "canny", 0.5, 0.6)
    assert first.resize_mode is ControlResize.RESIZE_AND_FILL and first.control_mode is ControlMode.PROMPT
    assert (first.threshold_a, first.threshold_b, first.processor_res) == (50.0, 200.0, 256)
    assert first.image is IMAGE
    assert second.image is None and second.control_mode is ControlMode.CONTROL
    assert second.resize_mode is ControlResize.JUST_RESIZE
    assert script_units({}, decode) == ()


@pytest.mark.parametrize(
    ("unit", "field"),
    [
        ({"model": "cn", "weight": "x"}, "alwayson_scripts.controlnet.args.0.weight"),
        ({"model": "cn", "resize_mode": 7}, "alwayson_scripts.controlnet.args.0.resize_mode"),
        ({"model": "../cn"}, "alwayson_scripts.controlnet.args.0.model"),
        ({"model": "cn", "pixel_perfect": True}, "alwayson_scripts.controlnet.args.0.pixel_perfect"),
        ({"model": "cn", "mask": "aGVsbG8="}, "alwayson_scripts.controlnet.args.0.mask"),
        ({"model": "cn", "weight": 3}, "alwayson_scripts.controlnet.args.0"),
    ],
)
def test_refusals_name_the_field(unit, field):
    with pytest.raises(InvalidRequest) as refused:
        script_units({"controlnet": {"args": [unit]}}, decode)
    assert refused.value.option == field


# Values of sd-webui-controlnet's own `pixel_perfect_resolution` (internal_controlnet/external_code.py at
# 56cec5b2), run on these sizes: (image w×h, target w×h) → Just Resize, Crop and Resize, Resize and Fill.
PIXEL_PERFECT = [
    ((1024, 768), (512, 512), (512, 512, 384)),
    ((768, 1024), (512, 768), (576, 576, 512)),
    ((300, 200), (768, 512), (512, 512, 512)),
    ((640, 480), (1024, 1024), (1024, 1024, 768)),
    ((1000, 333), (512, 512), (512, 512, 170)),
    ((4, 2), (5, 1), (2, 2, 1)),  # 2.5 and 3.5: numpy rounds half to even
    ((4, 2), (7, 1), (4, 4, 1)),
]


@pytest.mark.parametrize(("image", "target", "expected"), PIXEL_PERFECT)
def test_pixel_perfect_is_sd_webui_controlnets(image, target, expected):
    modes = (ControlResize.JUST_RESIZE, ControlResize.CROP_AND_RESIZE, ControlResize.RESIZE_AND_FILL)
    assert tuple(pixel_perfect_resolution(image, target, mode) for mode in modes) == expected


def test_pixel_perfect_sets_the_processor_resolution_from_the_image_and_the_size():
    own = {"model": "cn", "module": "canny", "image": "aGVsbG8=", "pixel_perfect": True, "processor_res": 64}
    fill = {**own, "resize_mode": "Resize and Fill"}
    borrowed = {"model": "cn", "module": "canny", "pixel_perfect": True}  # img2img's input image
    units = script_units({"controlnet": {"args": [own, fill, borrowed]}}, decode, (512, 768), (1024, 768))
    # the 8×8 control image to 512×768: ×96 (crop) or ×64 (fill); the 1024×768 input: ×1 of 768
    assert [u.processor_res for u in units] == [768, 512, 768]
