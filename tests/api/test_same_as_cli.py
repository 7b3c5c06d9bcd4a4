"""The same request through the API and through `salon imagine` gives the same pixels and infotext."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import requests
from PIL import Image

from app.api import open_api
from cli.main import main
from engine.infotext_files import read_infotext


def test_api_and_imagine_make_the_same_image(api_settings, engine, data_dir, tmp_path):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "cli-data"}"\nmodels_dir = "{data_dir / "models"}"\n')
    args = ["--config", str(config), "imagine", "a red circle, (blue:1.2)", "--negative", "dark",
            "--seed", "11", "--steps", "3", "--size", "64x64", "--sampler", "DPM++ 2M", "--schedule", "Karras",
            "--cfg", "6.5", "--model", "salon-demo-shapes", "--batch", "2",
            "--output", str(tmp_path / "cli")]  # fmt: skip
    assert main(args) == 0  # in the main thread, as a terminal runs it
    cli_files = sorted((tmp_path / "cli").glob("*.png"))
    body = {"prompt": "a red circle, (blue:1.2)", "negative_prompt": "dark", "seed": 11, "steps": 3,
            "width": 64, "height": 64, "sampler_name": "DPM++ 2M", "scheduler": "karras", "cfg_scale": 6.5,
            "batch_size": 2, "override_settings": {"sd_model_checkpoint": "salon-demo-shapes"}}  # fmt: skip

    async def through_api() -> requests.Response:
        async with open_api(api_settings(), "127.0.0.1", 0, engine=lambda: engine) as api:
            return await asyncio.to_thread(
                requests.post, f"{api.url}/sdapi/v1/txt2img", json=body, timeout=60
            )

    response = asyncio.run(through_api())
    images = [Image.open(io.BytesIO(base64.b64decode(data))) for data in response.json()["images"]]
    assert len(cli_files) == len(images) == 2
    for path, image in zip(cli_files, images, strict=True):
        assert image.info["parameters"] == read_infotext(path)
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(path)))
