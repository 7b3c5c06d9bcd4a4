"""`/imagine` end to end: defer, queue position, progress edits with a preview, then the PNG and its buttons."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from engine.demo import DEMO_MODEL_NAME
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext_from_image
from tests.bot.conftest import ANN, CHANNEL


async def test_imagine_defers_shows_progress_then_posts_the_png_with_its_infotext(salon):
    interaction = await salon.imagine(seed=4242, negative_prompt="green", steps=40)
    result = await salon.result(interaction)
    assert interaction.responses[0][0] == 5  # deferred at once…
    assert interaction.acked_at - interaction.created_at < 3.0  # …within Discord's 3 s
    original = interaction.original
    assert original is result and not original.ephemeral
    texts = [edit.payload.get("content") or "" for edit in original.edits]
    assert any("position 1 in the queue" in text for text in texts)
    steps = [text for text in texts if "/40" in text]  # 40 steps last longer than a few edit intervals
    assert steps and "ETA" in steps[-1]
    assert any(f.filename == "preview.png" for edit in original.edits for f in edit.files)
    times = [edit.at for edit in original.edits]
    assert all(b - a >= 0.15 for a, b in zip(times[1:], times[2:], strict=False))  # paced edits
    [png] = result.attachments
    image = Image.open(io.BytesIO(png.data))
    info = parse_infotext(read_infotext_from_image(image))
    assert (info.prompt, info.negative_prompt, info.seed, info.steps) == (
        "a red circle on a blue background",
        "green",
        4242,
        40,
    )
    assert info.size == (64, 64) and info.cfg_scale == 5.0 and info.model == DEMO_MODEL_NAME
    assert f"<@{ANN}>" in result.content and "seed 4242" in result.content
    labels = {label or emoji for _, label, emoji in result.buttons()}
    assert {"🎲", "✏️", "📋", "🗑️", "V1", "U1"} <= labels
    job_id = int(result.content.split("job ")[1].split(" ")[0])
    store = salon.services.queue.store
    for _ in range(100):  # marked delivered just after the message is shown
        job = await store.get(job_id)
        if job.delivered_at is not None:
            break
        await asyncio.sleep(0.05)
    assert job.delivered_at is not None and job.channel == str(CHANNEL)
