"""Files entering the catalog: each checked from its header before anything decodes it, then described.

`salon import`, the integrity repair and the jobs' own images all pass here. A file is refused, with its
reason, when its header declares more than `max_pixels` pixels, when it is bigger than MAX_BYTES, or when
its metadata is hostile (engine/image_io.py `check_image_file`: a 100 MB text chunk costs a few header
reads, not 300 MB); a file whose data turns out damaged when decoded is refused the same way. The decoded
pixels are hashed in bands, so a file costs its decoded size once, never twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from catalog.foreign import foreign_infotext
from catalog.paths import Found, PathForm, image_files
from catalog.records import NewImage, generation_fields
from core.errors import InvalidImage, InvalidRequest
from engine.image_io import ImageHeader, check_image_file
from engine.infotext_files import read_infotext

MAX_PIXELS = 4096 * 4096  # as Limits.max_input_pixels (the CLI passes the settings' larger limit)
MAX_BYTES = 256 << 20  # an image file over this is refused before it is opened
HASH_BAND_BYTES = 4 << 20  # pixels are hashed in bands of about this many bytes


def check(path: str | Path, max_pixels: int) -> ImageHeader:
    """The file's header, if it is an image the catalog takes; else InvalidImage with the reason."""
    header = check_image_file(path, max_pixels=max_pixels, max_bytes=MAX_BYTES)
    assert header is not None  # (known_type=True: an unknown type raises)
    return header


def generation_info(path: str | Path, header: ImageHeader) -> str:
    """A checked file's A1111 infotext, or another generator's info turned into one; "" when it has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path, formats=[header.kind]) as opened:
            chunks, size = dict(opened.info), opened.size
    return foreign_infotext(chunks, size) or read_infotext(path) or ""


def prepare(
    files: Sequence[Found], guild: str, author: str, max_pixels: int
) -> tuple[list[NewImage], list[str]]:
    """The files to add, with their generation info, and the refused ones as "path: reason"."""
    images: list[NewImage] = []
    skipped: list[str] = []
    for found in files:
        try:
            header = check(found.real, max_pixels)
            infotext = generation_info(found.real, header)
        except Exception as error:  # Pillow raises many types on damage; each refuses one file
            skipped.append(f"{found.path}: {reason(error)}")
            continue
        images.append(NewImage(found.real, guild, author, infotext))
    return images, skipped


def prepare_folder(
    folder: Path, guild: str, author: str, recursive: bool, exclude: Sequence[Path], max_pixels: int
) -> tuple[list[NewImage], list[str]]:
    """`prepare` for the image files under a folder (links leaving it are refused: catalog/paths.py)."""
    found, skipped = image_files(folder, recursive, exclude)
    images, refused = prepare(found, guild, author, max_pixels)
    return images, skipped + refused


def reason(error: BaseException) -> str:
    """Why a file was refused, in one line."""
    if isinstance(error, InvalidRequest):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        return f"cannot read the file ({error.strerror})"
    return str(error) or type(error).__name__


def describe_files(images: Sequence[NewImage], form: PathForm, max_pixels: int) -> list[dict | InvalidImage]:
    """The row of each new image (or why it was refused): its header checked, its pixels decoded and
    hashed once, its infotext parsed, its path in the stored form."""
    rows: list[dict | InvalidImage] = []
    for image in images:
        try:
            rows.append(_row(image, form, max_pixels))
        except InvalidImage as error:
            rows.append(error)
        except OSError as error:
            rows.append(InvalidImage("image", reason(error)))
    return rows


async def accepted(
    images: Sequence[NewImage], form: PathForm, max_pixels: int, skipped: list[str] | None
) -> tuple[list[NewImage], list[dict]]:
    """The images whose files pass (`describe_files`, in a worker thread) and their rows; a refused one raises
    InvalidImage, or, given a `skipped` list, is left out and listed there as "path: reason"."""
    described = await asyncio.get_running_loop().run_in_executor(
        None, describe_files, images, form, max_pixels
    )
    kept, rows = [], []
    for image, row in zip(images, described, strict=True):
        if isinstance(row, InvalidImage):
            if skipped is None:
                raise InvalidImage(row.option, f"{image.path}: {row.message}")
            skipped.append(f"{image.path}: {row.message}")
        else:
            kept.append(image)
            rows.append(row)
    return kept, rows


def _row(image: NewImage, form: PathForm, max_pixels: int) -> dict:
    path = Path(image.path)
    header = check(path, max_pixels)
    sha, width, height = _pixel_hash(path, header)
    fields = generation_fields(image.infotext)
    return {
        "guild": image.guild,
        "channel": image.channel,
        "message": image.message,
        "author": image.author,
        "created": image.created if image.created is not None else path.stat().st_mtime,
        "path": form.stored(path),
        "filename": path.name,
        "sha256": sha,
        "width": width,
        "height": height,
        "model": fields["model"],
        "model_hash": fields["model_hash"],
        "sampler": fields["sampler"],
        "schedule": fields["schedule"],
        "steps": fields["steps"],
        "cfg": fields["cfg"],
        "seed": fields["seed"],
        "prompt": fields["prompt"],
        "negative_prompt": fields["negative_prompt"],
        "params": fields["params"],
        "infotext": image.infotext,
        "networks": json.dumps(list(fields["networks"])),
        "parent_id": image.parent_id,
        "relation": image.relation.value if image.relation else None,
        "nsfw": int(image.nsfw),
        "job_id": image.job_id,
    }


def _pixel_hash(path: Path, header: ImageHeader) -> tuple[str, int, int]:
    """(pixel sha256, width, height) of a checked file, decoded with its sniffed format's decoder only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=[header.kind]) as opened:
                opened.load()
                return pixel_sha256(opened), opened.width, opened.height
    except InvalidImage:
        raise
    except OSError as error:
        if isinstance(error, FileNotFoundError | PermissionError):
            raise
        raise InvalidImage("image", f"the image data is damaged ({reason(error)})") from error
    except Exception as error:  # Pillow raises SyntaxError, ValueError, struct.error… on damage
        raise InvalidImage("image", f"the image data is damaged ({reason(error)})") from error


def pixel_sha256(image: Image.Image) -> str:
    """sha256 of the decoded pixels (with mode and size): equal for the same picture saved differently.

    Hashed band by band (the same bytes as `image.tobytes()`, without a second copy of the image)."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    row_bytes = max(1, len(image.crop((0, 0, image.width, 1)).tobytes())) if image.height else 1
    band = max(1, HASH_BAND_BYTES // row_bytes)
    for top in range(0, image.height, band):
        digest.update(image.crop((0, top, image.width, min(image.height, top + band))).tobytes())
    return digest.hexdigest()
