"""core.files: a file (or a folder) is replaced whole, with its mode, and no temp file is ever left behind."""

from __future__ import annotations

import os
import stat
import threading

import pytest
from PIL import Image

from core.files import atomic_write, atomic_write_with, replace_folder


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_bytes_and_text_with_the_intended_mode(tmp_path):
    target = tmp_path / "new" / "folder" / "file.json"  # a missing folder is made
    assert atomic_write(target, '{"é": 1}') == target
    assert target.read_bytes() == '{"é": 1}'.encode()
    assert _mode(target) == 0o644  # not mkstemp's 0600: the web server reads what we write
    secret = tmp_path / "secret"
    atomic_write(secret, b"\x00\x01", mode=0o600)
    assert secret.read_bytes() == b"\x00\x01" and _mode(secret) == 0o600
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file.json", "folder", "new", "secret"]


def test_an_existing_target_is_replaced_whole(tmp_path):
    target = tmp_path / "cache.json"
    target.write_text("x" * 10_000)
    os.chmod(target, 0o600)
    inode = target.stat().st_ino
    atomic_write(target, "short")
    assert target.read_text() == "short"  # not "short" followed by the old file's tail
    assert target.stat().st_ino != inode  # a new file renamed over it: a reader holding the old one keeps it
    assert _mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_a_writer_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")

    def half_then_fail(temp):
        temp.write_bytes(b"half of a new fi")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write_with(target, half_then_fail)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    with pytest.raises(KeyboardInterrupt):  # not only Exceptions: a Ctrl-C mid-write too
        atomic_write_with(target, lambda temp: (_ for _ in ()).throw(KeyboardInterrupt))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_a_writer_taking_a_path_writes_through_the_temp_file(tmp_path):
    """PIL, safetensors and torch open the path they are given; the temp name is hidden and ends in .tmp."""
    seen = []

    def save(temp):
        seen.append(temp)
        Image.new("RGB", (8, 8), (255, 0, 0)).save(temp, format="PNG")

    target = atomic_write_with(tmp_path / "00001-42.png", save)
    assert (
        seen[0].parent == tmp_path and seen[0].name.startswith(".00001-42.png.") and seen[0].suffix == ".tmp"
    )
    with Image.open(target) as image:
        assert image.getpixel((0, 0)) == (255, 0, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["00001-42.png"]


def test_writers_of_one_file_in_parallel_never_mix(tmp_path):
    """Two registries writing one hash cache used to share a fixed `.tmp` name; each write now has its own."""
    target = tmp_path / "hashes.json"
    texts = [str(i) * 50_000 for i in range(8)]
    errors = []

    def write(text):
        try:
            for _ in range(5):
                atomic_write(target, text)
        except Exception as exc:  # pragma: no cover - a failure is what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert target.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["hashes.json"]


def test_replace_folder_swaps_a_folder_in_whole(tmp_path):
    target = tmp_path / "index"
    target.mkdir()
    (target / "old-segment").write_text("old")

    def build(folder):
        (folder / "segment").write_text("new")

    assert replace_folder(target, build) == target
    assert [p.name for p in target.iterdir()] == ["segment"]
    assert [p.name for p in tmp_path.iterdir()] == ["index"]

    def fail(folder):
        (folder / "segment").write_text("half")
        raise RuntimeError("died while building")

    with pytest.raises(RuntimeError):
        replace_folder(target, fail)
    assert (target / "segment").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["index"]


def test_replace_folder_clears_what_a_dead_run_left(tmp_path):
    (tmp_path / ".model.partial").mkdir()
    (tmp_path / ".model.partial" / "junk").write_text("junk")
    (tmp_path / ".model.old").mkdir()
    replace_folder(tmp_path / "model", lambda folder: (folder / "unet").mkdir())
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["unet"]
