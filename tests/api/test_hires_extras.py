"""The API's hires extras: `hr_prompt`, `hr_negative_prompt`, `hr_sampler_name`, `hr_scheduler`, `hr_cfg` and
`hr_resize_x/y` become Salon's hires options ("Use same …" and empty values mean the first pass's)."""

from __future__ import annotations

from types import SimpleNamespace

from api.schemas import Txt2ImgBody
from api.translate import FIELD_OF_OPTION, generation_options
from config import Limits

SETTINGS = SimpleNamespace(styles_file=None, limits=Limits())


def _options(**body):
    return generation_options(Txt2ImgBody(prompt="a cat", **body), SETTINGS, {})  # type: ignore[arg-type]


def test_hires_extras_are_passed_on():
    options = _options(
        enable_hr=True,
        hr_prompt="a cat, detailed fur",
        hr_negative_prompt="blurry",
        hr_sampler_name="DPM++ 2S a",
        hr_scheduler="align_your_steps",
        hr_cfg=4.5,
        hr_resize_x=1024,
        hr_resize_y=0,
    )
    assert (options.hires_prompt, options.hires_negative_prompt) == ("a cat, detailed fur", "blurry")
    assert (options.hires_sampler, options.hires_schedule) == ("DPM++ 2S a", "align your steps")
    assert (options.hires_cfg_scale, options.hires_resize) == (4.5, "1024x0")


def test_what_clients_send_by_default_means_the_first_pass():
    options = _options(enable_hr=True, hr_sampler_name="Use same sampler", hr_scheduler="Use same scheduler")
    assert (options.hires_prompt, options.hires_cfg_scale, options.hires_resize) == ("", None, None)
    assert (options.hires_sampler, options.hires_schedule) == ("Use same sampler", "Use same scheduler")
    assert _options(hr_prompt="ignored without enable_hr").hires_prompt == ""


def test_refusals_of_the_hires_options_name_a1111_fields():
    for option, field in [
        ("hires_prompt", "hr_prompt"),
        ("hires_sampler", "hr_sampler_name"),
        ("hires_schedule", "hr_scheduler"),
        ("hires_cfg_scale", "hr_cfg"),
        ("hires_resize", "hr_resize_x"),
    ]:
        assert FIELD_OF_OPTION[option] == field
