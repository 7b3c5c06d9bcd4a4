"""Animations in the catalog (catalog/animations.py): one item per animation (its first frame, its video and
settings file), its frames its children; rated, browsed and found like images; and its web gallery page with a
`<video>` served only as the catalog recorded it (web/animation.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from catalog.animations import NewAnimation, video_of
from catalog.catalog import Catalog
from catalog.records import BrowseQuery, NewImage
from community.store import CommunityStore
from config import load_settings
from engine.animation.video import write_mp4
from engine.infotext_files import save_image_with_infotext
from web.server import serve

GUILD = "100"


def make_animation(folder: Path, frames: int = 4) -> NewAnimation:
    """An animation's files as the animation job leaves them: frames with infotext, the video, settings.txt."""
    (folder / "frames").mkdir(parents=True)
    images, new = [], []
    for index in range(frames):
        image = Image.new("RGB", (64, 64), (30 + 50 * index, 90, 160))
        path = folder / "frames" / f"{index:05d}.png"
        text = f"a drifting lighthouse\nSteps: 6, Sampler: Euler a, Seed: {7 + index}, Size: 64x64"
        save_image_with_infotext(image, path, text)
        images.append(image)
        new.append(NewImage(str(path), GUILD, "501", text, job_id=9))
    video = write_mp4(images, folder / "animation.mp4", fps=12)
    (folder / "settings.txt").write_text(json.dumps({"max_frames": frames}))
    results = [str(video), str(folder / "animation.gif"), str(folder / "settings.txt")]
    assert video_of(results) == str(video)
    return NewAnimation(tuple(new), video_of(results), str(folder / "settings.txt"), 12.0)


@pytest.fixture
async def catalog(tmp_path):
    opened = await Catalog.open(tmp_path / "data" / "catalog")
    yield opened
    await opened.close()


async def test_an_animation_is_one_item_with_its_frames_as_its_family(catalog, tmp_path):
    folder = tmp_path / "data" / "outputs" / "animations" / "00009-1"
    animation = make_animation(folder)
    item = await catalog.add_animation(animation)
    assert Path(item.path) == folder / "frames" / "00000.png" and item.seed == 7
    media = await catalog.animation(GUILD, item.id)
    assert media is not None and media.video == folder / "animation.mp4" and media.video_type == "video/mp4"
    assert media.settings_file == folder / "settings.txt" and media.frames == 4 and media.fps == 12
    assert await catalog.animation("200", item.id) is None  # another guild sees nothing
    family = await catalog.family(GUILD, item.id)
    assert [(m.relation, Path(m.record.path).name) for m in family.members] == [
        ("original", "00000.png"),
        ("animation frame", "00001.png"),
        ("animation frame", "00002.png"),
        ("animation frame", "00003.png"),
    ]
    assert await catalog.animation(GUILD, family.members[1].record.id) is None  # a frame is an image
    again = await catalog.add_animation(animation)  # a job run again after a crash adds nothing
    assert again.id == item.id and len(await catalog.family(GUILD, item.id)) == 4
    rated = await catalog.rate(GUILD, item.id, "502", 5)
    assert rated.rank_mean == 5
    page = await catalog.search(BrowseQuery(GUILD, keyword="lighthouse", rank=rated_filter()))
    assert [image.id for image in page.images] == [item.id]
    await catalog.delete(GUILD, [item.id])
    await catalog.purge(GUILD, [item.id])
    assert await catalog.animation(GUILD, item.id) is None  # its media row went with it


def rated_filter():
    from catalog.records import RankFilter

    return RankFilter.parse("5")


async def test_the_web_gallery_plays_an_animation_and_serves_only_its_recorded_files(tmp_path):
    settings = load_settings(None, data_dir=tmp_path / "data")
    catalog = await Catalog.open(settings.catalog_dir)
    community = await CommunityStore.open(settings.community_db)
    folder = tmp_path / "data" / "outputs" / "animations" / "00009-1"
    item = await catalog.add_animation(make_animation(folder))
    plain = await catalog.add(NewImage(str(folder / "frames" / "00001.png"), GUILD, "501"))
    runner = await serve(settings, catalog, community, "127.0.0.1", 0, local_guild=GUILD)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/image/{item.id}") as response:
                page = await response.text()
                assert (
                    response.status == 200
                    and "media-src 'self'" in response.headers["Content-Security-Policy"]
                )
            assert (
                f'<video class=full controls loop muted playsinline preload=metadata poster="../file/{item.id}"'
                in page
            )
            assert f'src="../video/{item.id}"' in page and "4 frames at 12 fps" in page
            assert "animation frame" in page  # the frames in the family strip
            async with http.get(f"{base}/video/{item.id}") as response:
                assert response.status == 200 and response.headers["Content-Type"] == "video/mp4"
                assert await response.read() == (folder / "animation.mp4").read_bytes()
            async with http.get(f"{base}/settings/{item.id}.txt") as response:
                assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
            async with http.get(f"{base}/video/{plain.id}") as response:
                assert response.status == 404  # not an animation
            async with http.get(f"{base}/image/{plain.id}") as response:
                assert "<video" not in await response.text()
            # A link planted where the video was: never followed.
            secret = tmp_path / "secret.mp4"
            secret.write_bytes(b"private")
            (folder / "animation.mp4").unlink()
            os.symlink(secret, folder / "animation.mp4")
            async with http.get(f"{base}/video/{item.id}") as response:
                assert response.status == 404
            await catalog.delete(GUILD, [item.id])
            async with http.get(f"{base}/settings/{item.id}.txt") as response:
                assert response.status == 404  # a deleted animation's files are not served
    finally:
        await runner.cleanup()
        await community.close()
        await catalog.close()
