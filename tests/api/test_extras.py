"""The Extras tab over HTTP: `/sdapi/v1/upscalers` lists the model upscalers, `/sdapi/v1/extra-single-image`
upscales with one as a queue job (A1111's answer shape and postprocessing text), refusals name A1111's fields,
and `hr_upscaler` takes a model upscaler."""

from __future__ import annotations

import asyncio
import base64
import io

import requests
from PIL import Image

from tests.tiny_upscalers import save_upscaler, tiny_esrgan


def _png(size=(20, 12)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def _post(api, path: str, body: dict) -> requests.Response:
    return await asyncio.to_thread(requests.post, f"{api.url}/sdapi/v1/{path}", json=body, timeout=120)


async def test_extras_upscale_and_the_upscaler_list(serve, data_dir):
    # the API's models folder is the session's (its worker runs the session's engine, tests/api/conftest.py)
    save_upscaler(tiny_esrgan(2), data_dir / "models" / "ESRGAN" / "2x-Tiny.safetensors")
    api = await serve()

    listed = (await asyncio.to_thread(requests.get, f"{api.url}/sdapi/v1/upscalers", timeout=60)).json()
    assert {"name": "2x-Tiny", "model_name": "ESRGAN", "model_path": "2x-Tiny.safetensors", "model_url": None,
            "scale": 2.0} in listed  # fmt: skip
    assert {"Lanczos", "Nearest"} <= {item["name"] for item in listed}

    body = {"image": _png(), "upscaler_1": "2x-Tiny", "upscaling_resize": 3}
    answer = await _post(api, "extra-single-image", body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["html_info"] == "<p>Postprocess upscale by: 3, Postprocess upscaler: 2x-Tiny</p>"
    with Image.open(io.BytesIO(base64.b64decode(result["image"]))) as image:
        assert image.size == (60, 36) and image.info["postprocessing"].endswith("upscaler: 2x-Tiny")

    for extra, field in [
        ({"upscaler_1": "4x-Nope"}, "upscaler_1"),
        ({"upscaling_resize": 20}, "upscaling_resize"),
        ({"resize_mode": 2}, "resize_mode"),
        ({"gfpgan_visibility": 0.5}, "gfpgan_visibility"),
        ({"upscaler_1": "None"}, "upscaler_1"),
    ]:
        refused = await _post(api, "extra-single-image", {**body, **extra})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", field]

    generation = {"prompt": "a circle", "width": 64, "height": 64, "steps": 2, "seed": 1, "enable_hr": True}
    hires = await _post(api, "txt2img", {**generation, "hr_scale": 2, "hr_upscaler": "2x-Tiny"})
    assert hires.status_code == 200, hires.text
    assert "Hires upscaler: 2x-Tiny" in hires.json()["info"]
