"""Result files made on another host in the bot: the Image Browser's contact sheet fetches what this host
lacks through `ResultFiles` (jobs/results.py), as the bot's deliveries do; the purge upkeep drops the shared
blobs no image needs any more (jobs/blob_retention.py) and this host's copies of them.

Two data folders stand for two hosts sharing one blob store (a local folder store in place of the database,
as tests/jobs/test_blobs.py does; tests/pg/test_results_across_hosts.py runs the same over PostgreSQL)."""

from __future__ import annotations

import io
import os
import shutil
import time

from PIL import Image

from catalog.records import NewImage
from engine.infotext import format_infotext
from engine.infotext_files import save_image_with_infotext
from jobs.blob_retention import DAY_S, PREVIEW_GRACE_S
from jobs.blobs import FolderBlobs
from jobs.results import ResultFiles
from tests.bot.conftest import ANN, CHANNEL, GUILD

RED = (200, 30, 30)
MISSING = (70, 70, 70)  # bot/render.py's cell for a file that is gone


async def _made_on_another_host(salon, tmp_path):
    """An image whose file host A made and published, then A's folder out of reach; the bot is host B."""
    blobs = FolderBlobs(tmp_path / "shared-store")
    host_a = tmp_path / "A" / "data"
    made = host_a / "outputs" / "txt2img-images" / "2024-05-01" / "00007-0-42.png"
    made.parent.mkdir(parents=True)
    infotext = format_infotext("a red square", "", {"Steps": 6, "Seed": 42, "Size": "64x64"})
    save_image_with_infotext(Image.new("RGB", (64, 64), RED), made, infotext)
    assert await ResultFiles(host_a, host_a / "outputs", blobs).publish([str(made)]) == 1
    [record] = await salon.services.catalog.add_many([NewImage(str(made), str(GUILD), str(ANN), infotext)])
    shutil.rmtree(tmp_path / "A")
    settings = salon.settings
    salon.services.queue.results = ResultFiles(settings.data_dir, settings.outputs_path, blobs)
    return record, settings.data_dir / "outputs" / "txt2img-images" / "2024-05-01" / "00007-0-42.png"


def _centre(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as sheet:
        return sheet.convert("RGB").getpixel((80, 80))  # the first cell's middle (cells of 160 px)


async def test_the_browser_fetches_a_result_file_this_host_lacks(salon, tmp_path):
    record, fetched = await _made_on_another_host(salon, tmp_path)
    assert not fetched.exists()
    shown = await salon.fake.slash(ANN, CHANNEL, "browse", {})
    await shown.wait_done()
    page = shown.original
    assert f"**#{record.id}**" in page.embeds[0]["description"]
    assert page.attachments[0].filename == "page.png"
    assert _centre(page.attachments[0].data) == RED  # drawn, not the grey cell of a missing file
    assert fetched.is_file()  # fetched once into this host's data folder


async def test_a_file_no_host_can_give_is_a_grey_cell_not_an_error(salon, tmp_path):
    record, fetched = await _made_on_another_host(salon, tmp_path)
    await salon.services.queue.results.blobs.delete("outputs/txt2img-images/2024-05-01/00007-0-42.png")
    shown = await salon.fake.slash(ANN, CHANNEL, "browse", {})
    await shown.wait_done()
    assert f"**#{record.id}**" in shown.original.embeds[0]["description"]
    assert _centre(shown.original.attachments[0].data) == MISSING and not fetched.exists()


async def test_the_purge_upkeep_drops_blobs_no_image_needs_and_their_copies_here(salon, tmp_path):
    record, fetched = await _made_on_another_host(salon, tmp_path)
    blobs = salon.services.queue.results.blobs
    await blobs.put("previews/7.jpg", b"a preview left by a killed worker")  # job 7 is not in the queue
    await salon.services.queue.results.local(record.path)
    assert fetched.is_file()
    key = "outputs/txt2img-images/2024-05-01/00007-0-42.png"
    stale = time.time() - 2 * PREVIEW_GRACE_S
    os.utime(blobs.root / "previews" / "7.jpg", (stale, stale))
    await salon.bot.schedule.upkeep("purge")
    assert not await blobs.has("previews/7.jpg")
    assert await blobs.has(key) and fetched.is_file()  # its image is in the catalog: kept, here too
    await salon.services.catalog.delete(str(GUILD), [record.id])
    await salon.services.catalog.purge(str(GUILD))
    old = time.time() - 31 * DAY_S  # the blob is older than blob_keep_days (30)
    os.utime(blobs.root / key, (old, old))
    await salon.bot.schedule.upkeep("purge")
    assert not await blobs.has(key) and not fetched.exists()


async def test_a_catalog_image_made_on_another_host_is_fetched_as_an_img2img_input(salon, tmp_path):
    record, fetched = await _made_on_another_host(salon, tmp_path)
    asked = await salon.fake.slash(ANN, CHANNEL, "img2img", {"prompt": "a red square", "image_id": record.id})
    await asked.wait_done()
    assert fetched.is_file()  # fetched into this host's data folder, not refused as gone
    [job] = await salon.services.queue.store.recent()
    assert job.kind.value == "img2img"
