"""`/xyz` with an image attached: every cell an img2img of it, the Denoising axis its strength."""

from __future__ import annotations

import io

from PIL import Image

from engine.infotext import parse_infotext
from tests.bot.conftest import ANN, CHANNEL


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 160, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_xyz_with_an_image_plots_img2img_cells(salon):
    options = {"prompt": "a red circle", "x": "Denoising=0.3,0.6", "steps": 2}
    upload = {"image": ("start.png", _png(), "image/png")}
    started = await salon.fake.slash(ANN, CHANNEL, "xyz", options, attachments=upload)
    await salon.fake.wait_for(
        lambda: started.original is not None and "grid(s)" in started.original.content, 300
    )
    assert "X/Y/Z plot: 2 image(s) on 1 grid(s)" in started.original.content
    job_id = int(started.original.content.rsplit("(job ", 1)[1].split(")")[0])
    images = await salon.services.catalog.of_job(job_id)
    strengths = sorted(parse_infotext(i.infotext).params.get("Denoising strength", "") for i in images)
    assert strengths[-2:] == ["0.3", "0.6"]


async def test_a_denoising_strength_without_an_image_is_refused(salon):
    refused = await salon.fake.slash(
        ANN, CHANNEL, "xyz", {"prompt": "a cat", "x": "Seed=1,2", "denoising_strength": 0.5}
    )
    await refused.wait_done()
    assert refused.original.ephemeral and "applies to an img2img plot" in refused.original.content
