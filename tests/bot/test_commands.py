"""Bad input, uploads, settings, NSFW rules, the queue commands, and surviving expiry and restarts."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib

from PIL import Image

from catalog.records import Relation
from jobs.records import JobStatus
from tests.bot.conftest import ADMIN, ANN, BOB, CHANNEL, GUILD, NSFW_CHANNEL
from tests.corpus import CORPUS


def _png(size=(64, 64), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring a huge image (a decompression bomb), with no real pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


async def _refused(interaction) -> str:
    """The refusal the asker sees. A refusal after a defer deletes the public "thinking…" reply and follows up
    ephemerally, so wait until only ephemeral messages are left."""
    await interaction.wait_done()

    def shown():
        return [m for m in (interaction.original, *interaction.followups) if m is not None and not m.deleted]

    await interaction.fake.wait_for(lambda: shown() and all(m.ephemeral for m in shown()), 10, "the refusal")
    return shown()[-1].content


async def test_invalid_options_get_an_ephemeral_message_and_no_job(salon):
    for options, expected in (
        ({"steps": 1000}, "**steps**"),
        ({"width": 100}, "**width**: 100 is not a multiple of 8"),
        ({"model": "no-such-model"}, "**model**: no checkpoint named 'no-such-model'"),
        ({"sampler": "Fastest"}, "**sampler**"),
        ({"prompt": "a cat <lora:../../etc/passwd:1>"}, "**lora**"),
        ({"style": "noir"}, "**style**: no style named 'noir'"),
    ):
        content = await _refused(await salon.imagine(**options))
        assert expected in content, (options, content)
    assert await salon.services.queue.store.recent() == []


async def test_img2img_and_inpaint_from_uploads_checked_by_content(salon):
    upload = {"image": ("start.png", _png(), "image/png")}
    done = await salon.fake.slash(
        ANN,
        CHANNEL,
        "img2img",
        {"prompt": "a blue square", "steps": 6, "width": 64, "height": 64, "denoising_strength": 0.5},
        attachments=upload,
    )
    [image] = await salon.images_of(await salon.result(done))
    assert image.relation is None and "Denoising strength: 0.5" in image.infotext
    inpaint = await salon.fake.slash(
        ANN,
        CHANNEL,
        "inpaint",
        {"prompt": "a green circle", "steps": 6, "region": "0,0,32,64"},
        attachments=upload,
    )
    [painted] = await salon.images_of(await salon.result(inpaint))
    assert (painted.width, painted.height) == (64, 64) and "Mask blur: 4" in painted.infotext
    fake_png = {"image": ("cat.png", b"this is not an image at all", "image/png")}
    content = await _refused(
        await salon.fake.slash(ANN, CHANNEL, "img2img", {"prompt": "x"}, attachments=fake_png)
    )
    assert content.startswith("**image**")
    bomb = {"image": ("bomb.png", _bomb_png(30000, 30000), "image/png")}
    content = await _refused(
        await salon.fake.slash(ANN, CHANNEL, "img2img", {"prompt": "x"}, attachments=bomb)
    )
    assert "**image**" in content and "pixels" in content
    both = await salon.fake.slash(ANN, CHANNEL, "inpaint", {"prompt": "x"}, attachments=upload)
    assert "give either a mask image or a region" in await _refused(both)
    jobs = await salon.services.queue.store.recent()
    assert len(jobs) == 2


async def test_img2img_from_a_catalog_image_links_the_parent(salon):
    first = await salon.result(await salon.imagine(seed=21))
    [parent] = await salon.images_of(first)
    done = await salon.fake.slash(
        BOB, CHANNEL, "img2img", {"prompt": "a blue square", "image_id": parent.id, "steps": 6}
    )
    [child] = await salon.images_of(await salon.result(done))
    assert (child.parent_id, child.relation) == (parent.id, Relation.IMG2IMG)
    missing = await salon.fake.slash(BOB, CHANNEL, "img2img", {"prompt": "x", "image_id": 99999})
    assert "there is no image 99999" in await _refused(missing)


async def test_pnginfo_reads_an_a1111_file_and_runs_it_again(salon):
    data = (CORPUS / "AUTOMATIC1111" / "automatic1111_cropped.png").read_bytes()
    shown = await salon.fake.slash(
        BOB, CHANNEL, "pnginfo", attachments={"image": ("a.png", data, "image/png")}
    )
    await shown.wait_done()
    message = shown.original
    assert "Steps:" in message.content and message.attachments[0].filename == "parameters.txt"
    empty = await salon.fake.slash(
        BOB, CHANNEL, "pnginfo", attachments={"image": ("b.png", _png(), "image/png")}
    )
    await empty.wait_done()
    assert empty.ephemeral and "No generation parameters" in empty.original.content


async def test_settings_need_manage_server_and_shape_requests(salon):
    refused = await salon.fake.slash(
        ANN, CHANNEL, "settings", {"key": "max_steps", "value": "8"}, subcommand="set", force=True
    )
    assert "only members with Manage Server" in await _refused(refused)
    for key, value in (("max_steps", "8"), ("negative_prefix", "lowres"), ("nsfw_words", "gore, blood")):
        done = await salon.fake.slash(
            ADMIN, CHANNEL, "settings", {"key": key, "value": value}, subcommand="set"
        )
        await done.wait_done()
        assert done.ephemeral and f"`{key}`" in done.original.content
    bad = await salon.fake.slash(
        ADMIN, CHANNEL, "settings", {"key": "max_steps", "value": "lots"}, subcommand="set"
    )
    assert "**max_steps**: 'lots' is not a whole number" in await _refused(bad)
    assert "steps" in await _refused(await salon.imagine(steps=10))
    assert "age-restricted channel" in await _refused(await salon.imagine(prompt="gore on a red circle"))
    allowed = await salon.imagine(channel=NSFW_CHANNEL, prompt="gore on a red circle", steps=6)
    result = await salon.result(allowed)
    [image] = await salon.images_of(result)
    assert image.nsfw and image.negative_prompt == "lowres"
    assert result.attachments[0].filename.startswith("SPOILER_")
    hidden = await salon.fake.slash(ANN, CHANNEL, "browse", {})
    await hidden.wait_done()
    assert f"**#{image.id}**" not in hidden.original.embeds[0]["description"]
    shown = await salon.fake.slash(ANN, NSFW_CHANNEL, "browse", {})
    await shown.wait_done()
    assert f"**#{image.id}**" in shown.original.embeds[0]["description"]


async def test_queue_and_cancel_a_running_job(salon):
    started = await salon.imagine(steps=150, seed=5)
    await salon.fake.wait_for(lambda: "/150" in (started.original.content if started.original else ""), 30)
    listing = await salon.fake.slash(BOB, CHANNEL, "queue", {})
    await listing.wait_done()
    assert "running" in listing.original.content and f"<@{ANN}>" in listing.original.content
    job = (await salon.services.queue.store.pending())[0]
    assert "not yours" in await _refused(await salon.fake.slash(BOB, CHANNEL, "cancel", {"job": job.id}))
    cancel = await salon.fake.slash(ANN, CHANNEL, "cancel", {})
    await cancel.wait_done()
    assert "stops at its next step" in cancel.original.content
    await salon.fake.wait_for(lambda: "was cancelled" in started.original.content, 30)
    assert (await salon.services.queue.store.get(job.id)).status is JobStatus.CANCELLED


async def test_an_expired_token_moves_the_job_to_a_new_channel_message(salon):
    started = await salon.imagine(steps=100, seed=6)
    await salon.fake.wait_for(lambda: "/100" in (started.original.content if started.original else ""), 30)
    salon.fake.expire(started)
    result = await salon.result(started)
    assert result is not started.original and result.interaction_id is None
    assert result.channel_id == CHANNEL and f"<@{ANN}>" in result.content
    assert any(r.status == 401 for r in salon.fake.error_responses)


async def test_a_job_outliving_the_token_lifetime_continues_in_a_new_message(salon):
    salon.settings.discord.interaction_token_s = 61.0  # with the 60 s margin: 1 s left to edit the reply
    started = await salon.imagine(steps=100, seed=10)
    result = await salon.result(started)
    assert result is not started.original and result.channel_id == CHANNEL and f"<@{ANN}>" in result.content
    assert not any(r.status == 401 for r in salon.fake.error_responses)  # switched before Discord refused


async def test_a_restart_keeps_old_buttons_working_and_delivers_jobs_left_behind(salon):
    first = await salon.result(await salon.imagine(seed=7))
    long_job = await salon.imagine(steps=80, seed=8)
    waiting = await salon.imagine(user=BOB, seed=9)
    await salon.fake.wait_for(lambda: "/80" in (long_job.original.content if long_job.original else ""), 30)
    await salon.restart()
    store = salon.services.queue.store
    # Both jobs from before the stop finish and are posted in the channel (their replies belonged to the
    # old process), each exactly once.
    await salon.fake.wait_for(
        lambda: sum("images #" in m.content for m in salon.fake.channel_messages(CHANNEL)) >= 3,
        60,
        "results posted",
    )
    for _ in range(200):  # marked delivered just after the message is shown
        jobs = [job for job in await store.recent() if job.status is JobStatus.DONE]
        if len(jobs) == 3 and all(job.delivered_at for job in jobs):
            break
        await asyncio.sleep(0.05)
    assert len(jobs) == 3 and all(job.delivered_at for job in jobs)
    posted = [m for m in salon.fake.channel_messages(CHANNEL) if "images #" in m.content]
    assert len(posted) == 3 and {f"<@{ANN}>" in m.content or f"<@{BOB}>" in m.content for m in posted} == {
        True
    }
    assert waiting.original is not None
    reroll = await salon.fake.click(
        BOB, first.id, first.find_button("🎲")
    )  # a button from before the restart
    [child] = await salon.images_of(await salon.result(reroll))
    [parent] = await salon.images_of(first)
    assert child.parent_id == parent.id
    assert str(GUILD) == child.guild


async def test_with_the_worker_in_another_process_the_bot_submits_and_posts_results(salon):
    from tests.queues import open_queue

    await salon.stop()
    worker = await open_queue(salon.settings, engine_factory=lambda: salon.engine)
    worker.claim_worker()  # as `salon worker` would, before the bot starts
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop=stop))
    try:
        await salon.start()
        assert salon.bot._worker is None
        [image] = await salon.images_of(await salon.result(await salon.imagine(seed=41)))
        assert image.seed == 41 and image.author == str(ANN)
    finally:
        stop.set()
        await running
        await worker.close()


async def test_imagine_controlnet_options_are_checked_before_a_job(salon):
    upload = {"control_image": ("edges.png", _png(), "image/png")}
    unknown = await salon.fake.slash(
        ANN,
        CHANNEL,
        "imagine",
        {"prompt": "x", "controlnet": "nope", "control_module": "canny"},
        attachments=upload,
    )
    assert "**controlnet**: no controlnet named 'nope'" in await _refused(unknown)
    no_image = await salon.fake.slash(ANN, CHANNEL, "imagine", {"prompt": "x", "controlnet": "nope"})
    assert "**control_image**: attach an control_image or give control_image_id" in await _refused(no_image)
    no_model = await salon.fake.slash(ANN, CHANNEL, "imagine", {"prompt": "x"}, attachments=upload)
    assert "**controlnet**: a control image needs a ControlNet" in await _refused(no_model)
    assert await salon.services.queue.store.recent() == []
