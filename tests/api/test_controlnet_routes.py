"""sd-webui-controlnet's listing routes on Salon's API, read by webuiapi (the client real tools use): the
installed ControlNets as "name [hash]" (the old 8-hex A1111 hash, as the extension's titles), which a unit
then takes by that title; the preprocessors with the extension's labels and sliders; its version and unit
count. Values pinned to Mikubill/sd-webui-controlnet at 56cec5b2 (scripts/api.py,
scripts/preprocessor/model_free_preprocessors.py, scripts/supported_preprocessor.py)."""

from __future__ import annotations

import asyncio
import shutil

import requests
import webuiapi

from api.controlnet import MODULES
from engine.controlnet.unit_text import PREPROCESSORS, preprocessor
from engine.models.registry import ModelKind, legacy_model_hash
from tests.tiny_models import build_tiny_controlnet


def get(api, route: str, params=None) -> dict:
    """A route of the served API, from a thread (the server runs in the test's event loop)."""
    return requests.get(f"{api.url}/controlnet/{route}", params=params, timeout=30).json()


async def test_the_listing_routes_answer_as_sd_webui_controlnet(serve, tmp_path, data_dir):
    models = tmp_path / "models"
    shutil.copytree(data_dir / "models", models)
    folder = build_tiny_controlnet(models / "ControlNet" / "control_tiny_canny")
    api = await serve(run_worker=False, models_dir=models)
    webui = await asyncio.to_thread(webuiapi.WebUIApi, host="127.0.0.1", port=api.port)  # it asks at once

    assert await asyncio.to_thread(webui.controlnet_version) == 3
    title = f"control_tiny_canny [{legacy_model_hash(folder)}]"
    assert await asyncio.to_thread(webui.controlnet_model_list) == [title]
    assert api.service.registry.find(ModelKind.CONTROLNET, title).path == folder  # a unit names it so

    assert await asyncio.to_thread(webui.controlnet_module_list) == [
        "none",
        "canny",
        "invert",
        "scribble_xdog",
    ]
    aliased = await asyncio.to_thread(get, api, "module_list", {"alias_names": "true"})
    assert aliased["module_list"][2] == "invert (from white bg & black line)"
    detail = aliased["module_detail"]
    assert detail["canny"]["sliders"] == [
        {"name": "Resolution", "value": 512, "min": 64, "max": 2048, "step": 8},
        {"name": "Low Threshold", "value": 100, "min": 1, "max": 255, "step": 1},
        {"name": "High Threshold", "value": 200, "min": 1, "max": 255, "step": 1},
    ]
    assert detail["invert (from white bg & black line)"] == {"model_free": False, "sliders": []}
    settings = await asyncio.to_thread(get, api, "settings")
    assert settings == {"control_net_unit_count": 4}


def test_every_label_is_a_module_a_unit_takes():
    assert set(MODULES) == set(PREPROCESSORS)
    for name, (label, _) in MODULES.items():
        assert preprocessor(label).name == name


async def test_a_client_picks_a_listed_controlnet_and_pixel_perfect_sets_the_resolution(
    api_settings, tmp_path, data_dir
):
    """webuiapi's own ControlNetUnit (pixel perfect on) with a title from /controlnet/model_list, on the tiny
    SD 1.x model: the image is made and its infotext names the unit with the resolution pixel perfect gave."""
    from PIL import Image

    from app.api import open_api
    from engine.runner import Engine

    models = tmp_path / "models"
    shutil.copytree(data_dir / "models", models)
    build_tiny_controlnet(models / "ControlNet" / "control_tiny_canny")
    settings = api_settings(models_dir=models)
    engine = Engine(settings)
    async with open_api(settings, "127.0.0.1", 0, None, run_worker=True, engine=lambda: engine) as api:
        webui = await asyncio.to_thread(webuiapi.WebUIApi, host="127.0.0.1", port=api.port)
        (title,) = await asyncio.to_thread(webui.controlnet_model_list)
        control = Image.new("RGB", (128, 96), "white")
        control.paste((0, 0, 0), (32, 24, 96, 72))
        unit = webuiapi.ControlNetUnit(
            image=control, module="canny", model=title, pixel_perfect=True, resize_mode="Crop and Resize"
        )
        result = await asyncio.to_thread(
            webui.txt2img,
            prompt="a square",
            width=64,
            height=64,
            steps=2,
            seed=3,
            sampler_name="Euler a",
            override_settings={"sd_model_checkpoint": "tiny"},
            controlnet_units=[unit],
            alwayson_scripts={},  # webuiapi 0.9.17 puts the units into its default dict, for every later call
        )
    assert result.image.size == (64, 64)
    infotext = result.info["infotexts"][0]
    # 96 high to 64: ×2/3; 128 wide to 64: ×1/2 → crop takes ×2/3 of the short side 96 = 64
    assert f'ControlNet 0: "Module: canny, Model: {title}' in infotext and "Processor Res: 64" in infotext
    assert "Pixel Perfect: True" in infotext


async def test_detect_runs_the_preprocessor_on_each_image(serve):
    """/controlnet/detect as webuiapi-era clients post it: canny's edges at the square's border only, invert
    exactly 255 − the image, -1 meaning the module's defaults, bad input a 422 naming the field."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    api = await serve(run_worker=False)
    picture = Image.new("RGB", (96, 64), "white")
    picture.paste((0, 0, 0), (32, 16, 64, 48))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")

    def detect(**body):
        body = {"controlnet_input_images": [encoded], **body}
        return requests.post(f"{api.url}/controlnet/detect", json=body, timeout=60)

    canny = (await asyncio.to_thread(detect, controlnet_module="canny", controlnet_processor_res=64)).json()
    assert canny["info"] == "Success" and len(canny["images"]) == 1
    edges = np.asarray(Image.open(io.BytesIO(base64.b64decode(canny["images"][0]))).convert("L"))
    assert edges.shape == (64, 96) and edges[28:36, 44:52].max() == 0 and edges[0:8, 0:8].max() == 0
    assert edges[14:50, 30:66].max() == 255  # the square's outline
    inverted = (await asyncio.to_thread(detect, controlnet_module="invert")).json()["images"][0]
    flipped = np.asarray(Image.open(io.BytesIO(base64.b64decode(inverted))).convert("RGB"))
    assert np.array_equal(flipped, 255 - np.asarray(picture))

    for body, field in (
        ({"controlnet_module": "depth_midas"}, "controlnet_module"),
        ({"controlnet_module": "canny", "controlnet_threshold_a": 300}, "controlnet_module"),
        ({"controlnet_module": "canny", "controlnet_masks": [encoded]}, "controlnet_masks"),
        (
            {"controlnet_module": "canny", "controlnet_input_images": ["bm90IGFuIGltYWdl"]},
            "controlnet_input_images",
        ),
    ):
        refused = await asyncio.to_thread(detect, **body)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][1] == field, body
