"""The Extras tab's "Scale to", second upscaler and batch over HTTP: `extra-single-image` with `resize_mode` 1
and `upscaler_2`, `extra-batch-images` (A1111's `imageList` of `{data, name}`) as one queue job, and
refusals naming A1111's fields (a bad picture by its place in the list and its name, too many pictures)."""

from __future__ import annotations

import asyncio
import base64
import io

import requests
from PIL import Image

from jobs.upscaling import MAX_BATCH_IMAGES
from tests.tiny_upscalers import save_upscaler, tiny_esrgan


def _png(size=(20, 12), colour="blue") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _image(data: str) -> Image.Image:
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        image.load()
        return image


async def _post(api, path: str, body: dict) -> requests.Response:
    return await asyncio.to_thread(requests.post, f"{api.url}/sdapi/v1/{path}", json=body, timeout=120)


async def test_scale_to_a_second_upscaler_and_a_batch(serve, data_dir):
    save_upscaler(tiny_esrgan(2), data_dir / "models" / "ESRGAN" / "2x-Tiny.safetensors")
    save_upscaler(tiny_esrgan(4, seed=3), data_dir / "models" / "ESRGAN" / "4x-ApiTwo.safetensors")
    api = await serve()

    body = {
        "image": _png(),
        "resize_mode": 1,
        "upscaling_resize_w": 64,
        "upscaling_resize_h": 64,
        "upscaling_crop": True,
        "upscaler_1": "2x-Tiny",
        "upscaler_2": "4x-ApiTwo",
        "extras_upscaler_2_visibility": 0.4,
    }
    answer = await _post(api, "extra-single-image", body)
    assert answer.status_code == 200, answer.text
    text = (
        "Postprocess upscale to: 64x64, Postprocess crop to: 64x64, Postprocess upscaler: 2x-Tiny, "
        "Postprocess upscaler 2: 4x-ApiTwo"
    )
    assert answer.json()["html_info"] == f"<p>{text}</p>"
    assert _image(answer.json()["image"]).size == (64, 64)

    uncropped = await _post(
        api, "extra-single-image", {**body, "upscaling_crop": False, "upscaler_2": "None"}
    )
    assert uncropped.status_code == 200, uncropped.text
    assert _image(uncropped.json()["image"]).size == (106, 64)  # covers 64x64 by 5.33…
    assert "upscaler 2" not in uncropped.json()["html_info"]

    lanczos = await _post(
        api, "extra-single-image", {"image": _png(), "upscaler_1": "Lanczos", "upscaling_resize": 2}
    )
    assert lanczos.status_code == 200, lanczos.text
    assert lanczos.json()["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos</p>"

    batch = {
        "imageList": [{"data": _png(), "name": "a.png"}, {"data": _png((16, 16), "red"), "name": "b.png"}],
        "upscaler_1": "2x-Tiny",
        "upscaling_resize": 2,
    }
    answer = await _post(api, "extra-batch-images", batch)
    assert answer.status_code == 200, answer.text
    images = [_image(data) for data in answer.json()["images"]]
    assert [image.size for image in images] == [(40, 24), (32, 32)]
    assert images[1].info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: 2x-Tiny"
    assert answer.json()["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: 2x-Tiny</p>"

    broken = {
        **batch,
        "imageList": [*batch["imageList"], {"data": base64.b64encode(b"junk").decode(), "name": "c"}],
    }
    too_many = {
        **batch,
        "imageList": [{"data": _png(), "name": f"{i}.png"} for i in range(MAX_BATCH_IMAGES + 1)],
    }
    for path, sent, field in [
        ("extra-batch-images", broken, "imageList[2]"),
        ("extra-batch-images", too_many, "imageList"),
        ("extra-batch-images", {**batch, "imageList": []}, "imageList"),
        ("extra-batch-images", {**batch, "resize_mode": 1, "upscaling_resize_w": 9000}, "upscaling_resize_w"),
        ("extra-single-image", {**body, "upscaler_2": "Nope"}, "upscaler_2"),
        ("extra-single-image", {**body, "extras_upscaler_2_visibility": 3}, "extras_upscaler_2_visibility"),
    ]:
        refused = await _post(api, path, sent)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", field], refused.text
    refused = await _post(api, "extra-batch-images", broken)
    assert "c: " in refused.json()["detail"][0]["msg"]
