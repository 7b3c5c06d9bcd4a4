"""The API driven by the real `webuiapi` client (PyPI), as the tools people already use drive A1111."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import webuiapi
from PIL import Image

from engine.demo import DEMO_MODEL_NAME
from engine.infotext import parse_infotext
from tests.api.conftest import next_event

SMALL = {"width": 64, "height": 64, "steps": 3, "cfg_scale": 5.0}


def client(api, **auth) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(host=api.host, port=api.port, sampler="Euler a", steps=3, **auth)


async def test_txt2img_answers_images_with_infotext_and_a1111_info(api):
    webui = await asyncio.to_thread(client, api)
    result = await asyncio.to_thread(webui.txt2img, prompt="a red circle", seed=7, batch_size=2, **SMALL)
    assert len(result.images) == 2 and result.images[0].size == (64, 64)
    info = result.info
    # A1111's Processed.js() keys (modules/processing.py, commit 0050a35429b824cbb0a794694358fb32ce487ac4).
    for key in ("prompt", "all_prompts", "seed", "all_seeds", "subseed", "all_subseeds", "infotexts",
                "sampler_name", "cfg_scale", "steps", "width", "height", "sd_model_name", "sd_model_hash",
                "job_timestamp", "clip_skip", "index_of_first_image"):  # fmt: skip
        assert key in info, key
    assert info["all_seeds"] == [7, 8] and info["sampler_name"] == "Euler a"
    text = result.images[0].info["parameters"]
    assert text == info["infotexts"][0]
    parsed = parse_infotext(text)
    assert (parsed.prompt, parsed.steps, parsed.seed, parsed.model) == ("a red circle", 3, 7, DEMO_MODEL_NAME)
    assert result.parameters["prompt"] == "a red circle"


async def test_img2img_with_a_mask_repaints_only_the_masked_part(api):
    webui = await asyncio.to_thread(client, api)
    source = Image.new("RGB", (64, 64), (20, 40, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    result = await asyncio.to_thread(
        webui.img2img, images=[source], mask_image=mask, inpainting_fill=1, inpaint_full_res=False,
        mask_blur=0, denoising_strength=0.9, prompt="a yellow square", seed=3, **SMALL,
    )  # fmt: skip
    out = np.asarray(result.images[0].convert("RGB")).astype(int)
    kept = np.abs(out[:, 40:] - np.array([20, 40, 200])).mean()
    changed = np.abs(out[:, :24] - np.array([20, 40, 200])).mean()
    assert kept < 12 and changed > kept
    assert "Denoising strength: 0.9" in result.images[0].info["parameters"]


async def test_options_switch_the_checkpoint_for_this_caller(api):
    webui = await asyncio.to_thread(client, api)
    before = await asyncio.to_thread(webui.util_get_current_model)
    assert before.startswith(f"{DEMO_MODEL_NAME} [")
    names = await asyncio.to_thread(webui.util_get_model_names)
    tiny = next(n for n in names if n.startswith("tiny ["))
    await asyncio.to_thread(webui.util_set_model, tiny)
    assert await asyncio.to_thread(webui.util_get_current_model) == tiny
    result = await asyncio.to_thread(webui.txt2img, prompt="x", seed=1, **SMALL)
    assert result.info["sd_model_name"] == "tiny"


async def test_png_info_reads_the_infotext_back(api):
    webui = await asyncio.to_thread(client, api)
    result = await asyncio.to_thread(webui.txt2img, prompt="a cat", negative_prompt="dark", seed=2, **SMALL)
    info = await asyncio.to_thread(webui.png_info, result.images[0])
    assert info.info == result.info["infotexts"][0]
    assert info.parameters["Prompt"] == "a cat" and info.parameters["Negative prompt"] == "dark"
    assert info.parameters["Seed"] == "2" and info.parameters["Size-1"] == "64"


async def test_progress_while_a_job_runs_then_interrupt(api):
    webui = await asyncio.to_thread(client, api)
    events = api.service.queue.subscribe()
    call = asyncio.create_task(
        asyncio.to_thread(webui.txt2img, prompt="slow", seed=1, **{**SMALL, "steps": 150})
    )
    await next_event(events, "progress")
    progress = await asyncio.to_thread(webui.get_progress)
    assert progress["state"]["job_count"] == 1 and progress["state"]["sampling_steps"] == 150
    assert 0 < progress["progress"] < 1
    await asyncio.to_thread(webui.interrupt)
    result = await call
    assert result.images == []
    idle = await asyncio.to_thread(webui.get_progress)
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0


async def test_list_endpoints(api):
    webui = await asyncio.to_thread(client, api)
    samplers = await asyncio.to_thread(webui.util_get_sampler_names)
    assert {"Euler a", "DPM++ 2M", "DDIM"} <= set(samplers)
    assert "karras" in await asyncio.to_thread(webui.util_get_scheduler_names)
    models = await asyncio.to_thread(webui.get_sd_models)
    assert {m["model_name"] for m in models} >= {DEMO_MODEL_NAME, "tiny"}
    assert all("/" not in m["filename"] for m in models)  # no paths leave the server
    assert await asyncio.to_thread(webui.get_latent_upscale_modes)
    assert {u["name"] for u in await asyncio.to_thread(webui.get_upscalers)} >= {"Lanczos", "Nearest"}
    for method in ("get_loras", "get_hypernetworks", "get_sd_vae", "get_prompt_styles", "get_cmd_flags",
                   "get_memory", "get_embeddings", "get_face_restorers", "get_scripts"):  # fmt: skip
        assert (await asyncio.to_thread(getattr(webui, method))) is not None, method
    assert json.dumps(await asyncio.to_thread(webui.get_cmd_flags)).find("/") == -1
