"""Face restoration over HTTP: txt2img's `restore_faces` (the restorer of the caller's /sdapi/v1/options, the
weight of `override_settings`) restores and answers A1111's `Face restoration` infotext and info fields;
extra-single-image's `gfpgan_visibility` runs after the upscaler and writes A1111's key, `codeformer_visibility`
alone restores with no upscaler; without a restorer each is refused naming its field. The options report and
set `face_restoration_model` and `code_former_weight`; /sdapi/v1/face-restorers lists A1111's two."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
import requests
import torch
from PIL import Image

from tests.tiny_faces import detect_small, one_face_detector, save_state, state_of, tiny_restoreformer
from tests.tiny_upscalers import save_upscaler, tiny_esrgan


async def _post(api, path: str, body: dict) -> requests.Response:
    return await asyncio.to_thread(requests.post, f"{api.url}/sdapi/v1/{path}", json=body, timeout=300)


@pytest.fixture
def face_models(data_dir, monkeypatch):
    """A restorer (RestoreFormerApi, the only file of models/GFPGAN) and the detector in the session's models
    folder (the API's worker runs the session's engine), removed afterwards."""
    folder = data_dir / "models" / "GFPGAN"
    files = [
        save_state(state_of(tiny_restoreformer()), folder / "RestoreFormerApi.safetensors"),
        folder / "detection_Resnet50_Final.pth",
        save_upscaler(tiny_esrgan(2), data_dir / "models" / "ESRGAN" / "2x-FaceApi.safetensors"),
    ]
    torch.save(one_face_detector(300.0 * detect_small(monkeypatch)), files[1])
    yield files
    for path in files:
        path.unlink(missing_ok=True)


async def test_restore_faces_in_txt2img_and_gfpgan_in_extras(serve, face_models):
    api = await serve()
    body = {"prompt": "a face", "width": 64, "height": 64, "steps": 2, "seed": 1, "restore_faces": True}
    refused = await _post(api, "txt2img", body)  # the server's face_restoration_model: CodeFormer, not here
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "restore_faces"]

    # The caller's /sdapi/v1/options name the restorer; the body's override_settings give the weight.
    assert (await _post(api, "options", {"face_restoration_model": "restoreformerapi"})).status_code == 200
    body["override_settings"] = {"code_former_weight": 0.3}
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

    # A1111's Extras with upscaler_1 None and only codeformer_visibility: the faces restored, nothing upscaled
    # (a RestoreFormer file, the one file of models/Codeformer, stands for CodeFormer).
    folder = face_models[0].parent.parent / "Codeformer"
    face_models.append(save_state(state_of(tiny_restoreformer()), folder / "RestoreFormerCF.safetensors"))
    buffer = io.BytesIO()
    Image.new("RGB", (80, 72), "gray").save(buffer, format="PNG")
    alone = {"image": base64.b64encode(buffer.getvalue()).decode(), "codeformer_visibility": 1}
    done = await _post(api, "extra-single-image", alone)
    assert done.status_code == 200, done.text
    assert done.json()["html_info"] == "<p>CodeFormer visibility: 1.0, CodeFormer weight: 0.0</p>"
    with Image.open(io.BytesIO(base64.b64decode(done.json()["image"]))) as image:
        assert image.size == (80, 72)
        assert image.convert("RGB").getextrema() != Image.new("RGB", (80, 72), "gray").getextrema()
    nothing = await _post(api, "extra-single-image", {"image": alone["image"]})
    assert nothing.status_code == 422 and nothing.json()["detail"][0]["loc"] == ["body", "upscaler_1"]


async def test_options_report_and_set_the_face_restorer_and_face_restorers_lists_a1111s(serve, face_models):
    api = await serve()
    options = (await asyncio.to_thread(requests.get, f"{api.url}/sdapi/v1/options", timeout=60)).json()
    assert (options["face_restoration_model"], options["code_former_weight"]) == ("CodeFormer", 0.5)
    assert (await _post(api, "options", {"face_restoration_model": "gfpgan", "code_former_weight": 0.25})).ok
    options = (await asyncio.to_thread(requests.get, f"{api.url}/sdapi/v1/options", timeout=60)).json()
    assert (options["face_restoration_model"], options["code_former_weight"]) == ("GFPGAN", 0.25)
    for key, value in (("face_restoration_model", "Nope"), ("code_former_weight", 1.5)):
        refused = await _post(api, "options", {key: value})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == key, refused.text
    listed = await asyncio.to_thread(requests.get, f"{api.url}/sdapi/v1/face-restorers", timeout=60)
    assert listed.json() == [  # A1111's two, in its order; the folders relative: no server path leaves
        {"name": "CodeFormer", "cmd_dir": "models/Codeformer"},
        {"name": "GFPGAN", "cmd_dir": "models/GFPGAN"},
    ]
