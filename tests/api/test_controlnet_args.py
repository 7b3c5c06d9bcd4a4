"""sd-webui-controlnet's API units (`alwayson_scripts.controlnet.args`) into Salon's units: names and numbers
for the modes, enabled units only, the image decoded, refusals naming the field."""

from __future__ import annotations

import pytest
from PIL import Image

from api.controlnet import script_units
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
        ({"model": "cn", "mask": "aGVsbG8="}, "alwayson_scripts.controlnet.args.0.mask"),
        ({"model": "cn", "weight": 3}, "alwayson_scripts.controlnet.args.0"),
    ],
)
def test_refusals_name_the_field(unit, field):
    with pytest.raises(InvalidRequest) as refused:
        script_units({"controlnet": {"args": [unit]}}, decode)
    assert refused.value.option == field


def test_pixel_perfect_is_the_units_and_must_be_a_boolean():
    own = {"model": "cn", "module": "canny", "image": "aGVsbG8=", "pixel_perfect": True}
    (unit,) = script_units({"controlnet": {"args": [own]}}, decode)
    assert unit.pixel_perfect and unit.processor_res == 512  # the job sets it from the image and the size
    with pytest.raises(InvalidRequest) as refused:
        script_units({"controlnet": {"args": [{**own, "pixel_perfect": "yes"}]}}, decode)
    assert refused.value.option == "alwayson_scripts.controlnet.args.0.pixel_perfect"
