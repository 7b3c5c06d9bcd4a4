"""Hostile image files, built byte by byte (small on disk, however many pixels they declare).

Shared by tests/faults/test_catalog_files.py and bench/faults_files.py. Each builder writes one file and
returns its path; `HOSTILE` names them all. `measured_salon` runs a `salon` command in a child process and
measures its time and peak memory.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ihdr(width: int, height: int, colour_type: int = 0) -> bytes:
    """An IHDR chunk: 8-bit samples, grey (0) or RGB (2)."""
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))


def declared_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height, followed by a tiny (truncated) IDAT."""
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(PNG_SIGNATURE + ihdr(width, height) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def complete_png(path: Path, width: int, height: int) -> Path:
    """A real, complete grey PNG of width x height, all black: a few hundred KB however big it is."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + samples
    parts, rows_at_once = [], max(1, (4 << 20) // len(row))
    for start in range(0, height, rows_at_once):
        parts.append(compressor.compress(row * min(rows_at_once, height - start)))
    parts.append(compressor.flush())
    idat = b"".join(parts)
    path.write_bytes(PNG_SIGNATURE + ihdr(width, height) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def broken_stream_png(path: Path) -> Path:
    """A 64x64 PNG whose IDAT is not a zlib stream (Pillow: "broken data stream")."""
    garbage = b"\x78\x9c" + bytes(range(7, 250)) * 4
    path.write_bytes(PNG_SIGNATURE + ihdr(64, 64, 2) + chunk(b"IDAT", garbage) + chunk(b"IEND", b""))
    return path


def big_text_png(path: Path, megabytes: int = 100) -> Path:
    """A 16x16 PNG with a `parameters` tEXt chunk of `megabytes` MB before its pixels."""
    small = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(small, format="PNG")
    body = small.getvalue()
    ihdr_end = len(PNG_SIGNATURE) + 25
    keyword, block = b"parameters\0", b"a" * (1 << 20)  # written a MB at a time: this process stays small
    crc = zlib.crc32(keyword, zlib.crc32(b"tEXt"))
    with path.open("wb") as file:
        file.write(body[:ihdr_end])
        file.write(struct.pack(">I", len(keyword) + len(block) * megabytes) + b"tEXt" + keyword)
        for _ in range(megabytes):
            file.write(block)
            crc = zlib.crc32(block, crc)
        file.write(struct.pack(">I", crc))
        file.write(body[ihdr_end:])
    return path


def png_with_infotext(path: Path, infotext: str, size: tuple[int, int] = (16, 16)) -> Path:
    """A small PNG whose `parameters` chunk holds `infotext` (as A1111 writes it)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    Image.new("RGB", size, (200, 40, 40)).save(path, format="PNG", pnginfo=info)
    return path


def huge_jpeg(path: Path, width: int = 65500, height: int = 65500) -> Path:
    """A real 16x16 JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 128, 255)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def huge_webp(path: Path, side: int = 16384) -> Path:
    """A real 16x16 lossless WebP whose VP8L header is rewritten to declare side x side."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 200, 0)).save(buffer, format="WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    at = data.index(b"VP8L") + 8
    assert data[at] == 0x2F
    bits = int.from_bytes(data[at + 1 : at + 5], "little")
    bits = (bits & ~0x0FFFFFFF) | (side - 1) | ((side - 1) << 14)
    data[at + 1 : at + 5] = bits.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def lora_flood_png(path: Path, megabytes: float = 1.0) -> Path:
    """A PNG whose infotext is `megabytes` MB (10^6 bytes: under the 1 MiB text cap) of `<lora:`."""
    count = int(megabytes * 1_000_000) // len("<lora:")
    return png_with_infotext(path, "<lora:" * count + "\nSteps: 20, Sampler: Euler a, Seed: 1")


def clean_png(path: Path) -> Path:
    """A small ordinary PNG with an A1111 infotext: the baseline."""
    return png_with_infotext(
        path, "a clean picture\nNegative prompt: blur\nSteps: 20, Sampler: Euler a, Seed: 7"
    )


HOSTILE: dict[str, Callable[[Path], Path]] = {
    "png 65535x65535 declared": lambda folder: declared_png(folder / "declared-65535.png", 65535, 65535),
    "png 225 MP": lambda folder: complete_png(folder / "complete-225mp.png", 15000, 15000),
    "png 169 MP": lambda folder: complete_png(folder / "complete-169mp.png", 13000, 13000),
    "jpeg 65500x65500": lambda folder: huge_jpeg(folder / "huge.jpg"),
    "webp 16384x16384": lambda folder: huge_webp(folder / "huge.webp"),
    "png broken data stream": lambda folder: broken_stream_png(folder / "broken-stream.png"),
    "png 100 MB text chunk": lambda folder: big_text_png(folder / "big-text.png"),
    "png 1 MB of <lora:": lambda folder: lora_flood_png(folder / "lora-flood.png"),
}


# A child that runs `salon ARGS` and writes its own peak RSS (VmHWM: since its exec, so a big parent that
# forked it does not count, as it would in wait4's ru_maxrss) to the file named by its first argument.
_MEASURED = """
import atexit, sys
def _peak():
    with open('/proc/self/status') as status, open(sys.argv[1], 'w') as out:
        out.write(next(line.split()[1] for line in status if line.startswith('VmHWM:')))
atexit.register(_peak)
from cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float
    peak_mb: float
    stderr: str


def measured_salon(args: list[str], data_dir: Path, root: Path) -> Measured:
    """Run `salon ARGS` in a child process with SALON_DATA_DIR=data_dir: exit status, wall time, peak RSS."""
    peak_file = data_dir.parent / f".{data_dir.name}.peak"
    env = {**os.environ, "SALON_DATA_DIR": str(data_dir), "PYTHONPATH": str(root)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(peak_file), *args],
        cwd=data_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    peak = int(peak_file.read_text()) / 1024
    peak_file.unlink()
    return Measured(done.returncode, seconds, peak, done.stderr[-2000:])
