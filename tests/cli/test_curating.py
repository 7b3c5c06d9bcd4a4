"""Curating from the command line (cli/curating.py): rate, favourite, delete by id and by filter (asking, or
refusing without --yes off a terminal), restore, purge, `browse --deleted` and `browse --family`."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from catalog.catalog import Catalog
from catalog.records import NewImage, Relation
from cli.main import main
from config import load_settings
from engine.infotext import format_infotext
from engine.infotext_files import save_image_with_infotext
from jobs.queue import owner_for_cli

PROMPTS = ["a red cat", "a blue cat", "a green dog", "a red boat"]


@pytest.fixture
def config(tmp_path):
    """A data folder whose `local` catalog holds the four prompts, then a reroll and an upscale of the first
    and an img2img of the upscale."""
    path = tmp_path / "salon.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n[catalog]\ntext_index = "sqlite"\n')
    settings = load_settings(path)
    outputs = tmp_path / "data" / "outputs"
    outputs.mkdir(parents=True)

    def image(name: str, prompt: str, seed: int, parent=None, relation=None) -> NewImage:
        info = format_infotext(prompt, "", {"Steps": 20, "Seed": seed, "Size": "16x16"})
        saved = save_image_with_infotext(Image.new("RGB", (16, 16), (seed * 40, 0, 0)), outputs / name, info)
        return NewImage(str(saved), "local", "ann", info, parent_id=parent, relation=relation)

    async def seed():
        catalog = await Catalog.open(settings.catalog_dir, text_index="sqlite")
        try:
            first = [await catalog.add(image(f"{i}.png", p, i)) for i, p in enumerate(PROMPTS)]
            root = first[0].id
            await catalog.add(image("reroll.png", PROMPTS[0], 10, root, Relation.REROLL))
            upscale = await catalog.add(image("upscale.png", PROMPTS[0], 11, root, Relation.UPSCALE))
            await catalog.add(image("again.png", "a red cat, oil", 12, upscale.id, Relation.IMG2IMG))
            return [record.id for record in first]
        finally:
            await catalog.close()

    ids = asyncio.run(seed())
    return path, ids


def salon(config, *args: str) -> int:
    return main(["--config", str(config[0]), *args])


def _image(config, image_id: int):
    async def get():
        catalog = await Catalog.open(load_settings(config[0]).catalog_dir, text_index="sqlite")
        try:
            return await catalog.get("local", image_id), await catalog.is_favourite(image_id, owner_for_cli())
        finally:
            await catalog.close()

    return asyncio.run(get())


def test_rate_and_favourite_as_the_cli_owner(config, capsys):
    _, ids = config
    assert salon(config, "rate", str(ids[1]), "4") == 0
    assert f"#{ids[1]}: rated 4 (as {owner_for_cli()}); now 4.00 from 1 rating(s)" in capsys.readouterr().out
    assert salon(config, "browse", "--rank", "4") == 0
    assert "page 1 of 1 (1 images)" in capsys.readouterr().out
    assert salon(config, "rate", str(ids[1]), "none") == 0
    assert "your rating removed" in capsys.readouterr().out and _image(config, ids[1])[0].rank_count == 0
    assert salon(config, "rate", str(ids[1]), "6") == 2
    assert "score: '6' is not a score from 1 to 5" in capsys.readouterr().err
    assert salon(config, "rate", "9999", "3") == 2
    assert "id: no image 9999 in guild 'local'" in capsys.readouterr().err
    assert salon(config, "favourite", str(ids[2])) == 0 and _image(config, ids[2])[1]
    assert salon(config, "browse", "--favourites-of", owner_for_cli()) == 0
    assert "(1 images)" in capsys.readouterr().out
    assert salon(config, "favourite", str(ids[2]), "--off") == 0 and not _image(config, ids[2])[1]
    assert "removed from the favourites" in capsys.readouterr().out


def test_delete_restore_purge_and_the_recycle_bin(config, capsys):
    _, ids = config
    assert salon(config, "delete", str(ids[3]), "9999") == 2  # one unknown: nothing is deleted
    assert "no image 9999" in capsys.readouterr().err and not _image(config, ids[3])[0].deleted
    assert salon(config, "delete", str(ids[3])) == 0
    assert "1 image(s) moved to the recycle bin" in capsys.readouterr().out
    assert _image(config, ids[3])[0].deleted
    assert salon(config, "delete", str(ids[3])) == 2
    assert "already in the recycle bin" in capsys.readouterr().err
    assert salon(config, "browse", "--deleted") == 0
    out = capsys.readouterr().out
    assert "red boat" in out and "(1 images)" in out
    assert salon(config, "restore", str(ids[2])) == 2
    assert f"image {ids[2]} is not in the recycle bin" in capsys.readouterr().err
    assert salon(config, "restore", str(ids[3])) == 0
    assert "1 image(s) restored" in capsys.readouterr().out and not _image(config, ids[3])[0].deleted
    assert salon(config, "delete") == 2 and "give image ids, or --filter" in capsys.readouterr().err
    # By filter: stdin is not a terminal here, so without --yes nothing happens.
    assert salon(config, "delete", "--filter", "cat") == 2
    err = capsys.readouterr().err
    assert "--yes" in err and "stdin is not a terminal" in err and "5 image(s) matching 'cat'" in err
    assert salon(config, "delete", "--filter", "cat", "--yes") == 0
    assert "5 image(s) moved" in capsys.readouterr().out
    assert salon(config, "purge") == 2 and "--yes" in capsys.readouterr().err
    assert salon(config, "purge", "--yes") == 0 and "5 image(s) removed for good" in capsys.readouterr().out
    assert _image(config, ids[0])[0] is None
    assert salon(config, "purge") == 0 and "the recycle bin is empty" in capsys.readouterr().out


def test_delete_by_filter_asks_on_a_terminal(config, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert salon(config, "delete", "--filter", "red") == 1
    assert "nothing deleted" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert salon(config, "delete", "--filter", "red") == 0
    assert "5 image(s) moved" in capsys.readouterr().out  # the red cat and its family, the red boat
    assert salon(config, "browse", "--deleted") == 0 and "(5 images)" in capsys.readouterr().out


def test_browse_family_shows_the_original_and_each_relation(config, capsys):
    _, ids = config
    assert salon(config, "browse", "--family", str(ids[0] + 6)) == 0  # asked from the img2img grandchild
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "│" in line]
    relations = [cells.split("│")[2].strip() for cells in lines]
    assert relations == ["original", "reroll", "upscale", "img2img ◀"]
    assert f"the family of #{ids[0] + 6}: 4 image(s), original #{ids[0]}" in out
    assert salon(config, "browse", "--family", "9999") == 2
    assert "image: there is no image 9999" in capsys.readouterr().err
