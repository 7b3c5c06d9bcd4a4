"""Face restoration over HTTP: txt2img's `restore_faces` (with `override_settings.face_restoration_model`)
restores and answers A1111's `Face restoration` infotext and info fields; extra-single-image's
`gfpgan_visibility` runs after the upscaler and writes A1111's key; without a restorer each is refused naming
its field."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
import requests
import torch
from PIL import Image

from tests.tiny_faces import one_face_detector, save_state, state_of, tiny_restoreformer
from tests.tiny_upscalers import save_upscaler, tiny_esrgan


async def _post(api, path: str, body: dict) -> requests.Response:
    return await asyncio.to_thread(requests.post, f"{api.url}/sdapi/v1/{path}", json=body, timeout=300)


@pytest.fixture
def face_models(data_dir):
    """A restorer (RestoreFormerApi, the only file of models/GFPGAN) and the detector in the session's models
    folder (the API's worker runs the session's engine), removed afterwards."""
    folder = data_dir / "models" / "GFPGAN"
    files = [
        save_state(state_of(tiny_restoreformer()), folder / "RestoreFormerApi.safetensors"),
        folder / "detection_Resnet50_Final.pth",
        save_upscaler(tiny_esrgan(2), data_dir / "models" / "ESRGAN" / "2x-FaceApi.safetensors"),
    ]
    torch.save(one_face_detector(300.0), files[1])
    yield files
    for path in files:
        path.unlink(missing_ok=True)


async def test_restore_faces_in_txt2img_and_gfpgan_in_extras(serve, face_models):
    api = await serve()
    body = {"prompt": "a face", "width": 64, "height": 64, "steps": 2, "seed": 1, "restore_faces": True}
    refused = await _post(api, "txt2img", body)  # the server's face_restoration_model: CodeFormer, not here
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "restore_faces"]

    body["override_settings"] = {"face_restoration_model": "RestoreFormerApi", "code_former_weight": 0.3}
    answer = await _post(api, "txt2img", body)
    assert answer.status_code == 200, answer.text
    info = json.loads(answer.json()["info"])
    assert "Face restoration: RestoreFormerApi" in info["infotexts"][0]
    assert (info["restore_faces"], info["face_restoration_model"]) == (True, "RestoreFormerApi")

    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), "gray").save(buffer, format="PNG")
    extras = {"image": base64.b64encode(buffer.getvalue()).decode(), "upscaler_1": "2x-FaceApi"}
    done = await _post(api, "extra-single-image", {**extras, "upscaling_resize": 2, "gfpgan_visibility": 0.5})
    assert done.status_code == 200, done.text
    assert done.json()["html_info"] == (
        "<p>Postprocess upscale by: 2, Postprocess upscaler: 2x-FaceApi, GFPGAN visibility: 0.5</p>"
    )
    missing = await _post(api, "extra-single-image", {**extras, "codeformer_visibility": 0.5})
    assert missing.status_code == 422, missing.text
    assert missing.json()["detail"][0]["loc"] == ["body", "codeformer_visibility"]
