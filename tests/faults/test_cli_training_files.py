"""Hostile files in a training folder (issue 18, item 8, the `salon train` half): every file is checked by
its size and image header before it is read, so a sparse 1 GiB `.png`, a declared 65535² PNG or a truncated
PNG is refused by name with its reason in well under a second, without reading it into memory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cli.main import main
from tests.faults.hostile_files import declared_png

ROOT = Path(__file__).resolve().parents[2]
MAX_SECONDS = 1.0
MAX_GROWTH_MB = 64.0
# In a fresh process: the peak RSS (ru_maxrss) before and after reading the folder, and the time it took.
MEASURE = """
import json, resource, sys, time
from pathlib import Path
from commands.training import images_from_folder
from config import load_settings
from core.errors import InvalidRequest
settings = load_settings(None, data_dir=Path(sys.argv[2]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    images_from_folder(Path(sys.argv[1]), settings)
    error = None
except InvalidRequest as exc:
    error = str(exc)
seconds = time.perf_counter() - started
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"error": error, "seconds": seconds, "growth_mb": growth}))
"""


def png_bytes(side: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def sparse_png(path: Path) -> Path:
    """A valid PNG header, then a hole up to 1 GiB (costs no disk, reads as 1 GiB)."""
    path.write_bytes(png_bytes())
    with path.open("r+b") as file:
        file.truncate(2**30)
    return path


def truncated_png(path: Path) -> Path:
    """A real 64x64 PNG cut in the middle of its pixel data."""
    data = png_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


HOSTILE = {
    "sparse.png": (sparse_png, "the file is 1024.0 MiB, more than the limit"),
    "declared.png": (lambda path: declared_png(path, 65535, 65535), "is 65535x65535 = 4,294,836,225 pixels"),
    "truncated.png": (truncated_png, "the PNG"),
}


def measure(folder: Path, data_dir: Path) -> dict:
    """Read a training folder in a fresh process: its refusal, seconds and peak RSS growth in MB."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder), str(data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_file_in_a_training_folder_is_refused_from_its_header(tmp_path, name):
    """Item 8: refused by name and reason in < 1 s with < 64 MB peak RSS growth (a fresh process)."""
    make, reason = HOSTILE[name]
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes())
    make(folder / name)
    result = measure(folder, tmp_path / "data")
    assert result["error"].startswith(f"images: {name}: ") and reason in result["error"]
    assert result["seconds"] < MAX_SECONDS, result
    assert result["growth_mb"] < MAX_GROWTH_MB, result


def test_salon_train_names_the_bad_file_and_exits_2(tmp_path, capsys):
    """Item 8: `salon train` on a folder with a sparse 1 GiB .png: one line naming it, exit status 2."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes())
    sparse_png(folder / "huge.png")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ndefault_model = "salon-demo-shapes"\n')
    assert main(["--config", str(config), "train", "lora", str(folder), "--name", "x", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error images: huge.png: the file is 1024.0 MiB") and err.count("\n") == 1


def test_a_caption_file_is_bounded_before_it_is_read(tmp_path):
    """Item 8: a sparse 1 GiB caption `.txt` is refused by its size, not read."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes())
    with (folder / "good.txt").open("wb") as file:
        file.truncate(2**30)
    result = measure(folder, tmp_path / "data")
    assert result["error"].startswith("images: good.txt: a caption file of more than 64 KiB"), result
    assert result["growth_mb"] < MAX_GROWTH_MB, result


def test_zip_members_over_the_limits_are_refused_before_any_is_read(tmp_path, monkeypatch):
    """Item 8: a zip whose image member declares more bytes than an upload may have is refused unread."""
    import zipfile

    from commands.training import images_from_zip
    from config import load_settings
    from core.errors import InvalidRequest

    settings = load_settings(None, data_dir=tmp_path / "data", limits={"max_upload_bytes": 64 * 1024})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("good.png", png_bytes())
        archive.writestr("big.png", png_bytes() + b"\0" * (128 * 1024))
    read = []
    original = zipfile.ZipFile.open

    def opened(self, member, *args, **kwargs):
        read.append(member)
        return original(self, member, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", opened)
    with pytest.raises(
        InvalidRequest, match="images: big.png: the file is 128.2 KiB, more than the limit of 64.0 KiB"
    ):
        images_from_zip(buffer.getvalue(), settings)
    assert read == []
