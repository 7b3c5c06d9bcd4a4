"""Training requests from any front end: the images (a folder, a zip, uploads) checked one by one, their
captions, the output name and who may overwrite what; the result is a `LongJob` for the queue."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image

from commands.generation import LongJob
from commands.options import load_input_image
from commands.training_concepts import ConceptImages, concept_params
from config import Settings
from core.errors import InvalidRequest
from engine.models.trained_files import TRAINERS, check_name, output_paths, owner_of
from jobs.codec import store_image
from jobs.records import JobKind

MAX_IMAGES = 200
MAX_ZIP_BYTES = 512 * 1024 * 1024  # uncompressed, all members together
MAX_ZIP_RATIO = 200  # a member expanding more than this is a bomb
MAX_CAPTION_BYTES = 64 * 1024  # a .txt caption longer than this is not a caption
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
_LEADING_NUMBER = re.compile(r"^[-\d]+\s*")  # A1111 drops "00012-" from file names used as captions


def caption_from_name(stem: str) -> str:
    """A1111's [filewords] from a file name: without a leading number, underscores as spaces."""
    return _LEADING_NUMBER.sub("", stem).replace("_", " ").strip()


def images_from_files(
    files: list[tuple[str, bytes | Path]], settings: Settings
) -> list[tuple[Image.Image, str]]:
    """Images (checked by content, size and pixels) with captions from a `.txt` of the same name, else the
    file name. Names are only used for captions, never as paths. A source given as a Path is checked by its
    size and header before it is read (a 1 GiB file or a declared 65535² PNG costs a stat and a header)."""
    texts = {
        Path(name).stem: _caption_text(name, data).decode("utf-8", errors="replace").strip()
        for name, data in files
        if name.lower().endswith(".txt")
    }
    found = []
    for name, data in files:
        if not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        stem = Path(name).stem
        image = load_input_image(data, settings.limits, f"images: {Path(name).name}")
        found.append((image, texts.get(stem) or caption_from_name(stem)))
        if len(found) > MAX_IMAGES:
            raise InvalidRequest("images", f"more than {MAX_IMAGES} images; train on fewer")
    if not found:
        raise InvalidRequest("images", "no images found (PNG, JPEG, WebP, BMP or GIF)")
    return found


def images_from_folder(folder: Path, settings: Settings) -> list[tuple[Image.Image, str]]:
    if not folder.is_dir():
        raise InvalidRequest("folder", f"{folder} is not a folder")
    files = [
        p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, ".txt")
    ]
    return images_from_files([(p.name, p) for p in files], settings)  # each read only once it is checked


def _caption_text(name: str, source: bytes | Path) -> bytes:
    """A caption file's bytes, refusing one over MAX_CAPTION_BYTES before reading it."""
    if isinstance(source, Path):
        try:
            if source.stat().st_size > MAX_CAPTION_BYTES:
                raise _caption_too_long(name)
            with source.open("rb") as file:
                source = file.read(MAX_CAPTION_BYTES + 1)
        except OSError as exc:
            raise InvalidRequest(
                f"images: {Path(name).name}", f"cannot read it ({exc.strerror or exc})"
            ) from None
    if len(source) > MAX_CAPTION_BYTES:
        raise _caption_too_long(name)
    return bytes(source)


def _caption_too_long(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"images: {Path(name).name}",
        f"a caption file of more than {MAX_CAPTION_BYTES // 1024} KiB; shorten it",
    )


def images_from_zip(data: bytes, settings: Settings) -> list[tuple[Image.Image, str]]:
    """The images of a zip, refusing bombs (by declared and real sizes) before anything is decompressed whole."""
    return images_from_files(
        [(Path(name).name, content) for name, content in zip_files(data, settings)], settings
    )


def zip_files(data: bytes, settings: Settings) -> list[tuple[str, bytes]]:
    """The images and captions of a zip with their paths inside it (bombs refused before any is read whole)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InvalidRequest("images", "the attachment is not a zip file") from None
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > 2 * MAX_IMAGES:
        raise InvalidRequest(
            "images", f"the zip holds {len(members)} files; at most {2 * MAX_IMAGES} are read"
        )
    if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
        raise InvalidRequest("images", "the zip expands to more than 512 MiB")
    members = [m for m in members if m.filename.lower().endswith((*IMAGE_SUFFIXES, ".txt"))]
    for member in members:  # every limit from the directory, before any member is read
        if member.file_size > MAX_ZIP_RATIO * max(member.compress_size, 1) and member.file_size > 1024 * 1024:
            raise InvalidRequest(
                "images",
                f"{member.filename!r} expands {member.file_size // max(member.compress_size, 1)}× (a zip bomb)",
            )
        _check_member(member, settings.limits.max_upload_bytes)
    files = []
    for member in members:
        with archive.open(member) as opened:
            content = opened.read(min(member.file_size, settings.limits.max_upload_bytes) + 1)
        if len(content) > member.file_size:
            raise InvalidRequest("images", f"{member.filename!r} is larger than the zip says")
        files.append((member.filename, content))
    return files


def _check_member(member: zipfile.ZipInfo, max_upload_bytes: int) -> None:
    """Refuse a member whose declared size is over the limit for its kind (an image or a caption)."""
    name = Path(member.filename).name
    lower = name.lower()
    if lower.endswith(".txt") and member.file_size > MAX_CAPTION_BYTES:
        raise _caption_too_long(name)
    if lower.endswith(IMAGE_SUFFIXES) and member.file_size > max_upload_bytes:
        raise InvalidRequest(
            f"images: {name}",
            f"the file is {_size_text(member.file_size)}, more than the limit of {_size_text(max_upload_bytes)}",
        )


def _size_text(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 1024:.1f} KiB"


def training_job(
    settings: Settings,
    trainer: str,
    name: str,
    images: list[tuple[Image.Image, str]],
    owner: str,
    *,
    model: str | None = None,
    overwrite: bool = False,
    options: dict[str, Any] | None = None,
    concepts: list[ConceptImages] | None = None,
) -> LongJob:
    """The queue job training `name` on `images` (or, for Dreambooth, on several `concepts`); refuses to
    overwrite a file of someone else (or one that was installed by hand), and an existing file of one's own
    without `overwrite`."""
    if trainer not in TRAINERS:
        raise InvalidRequest("kind", f"{trainer!r} is not one of: {', '.join(TRAINERS)}")
    check_name(name)
    taken = [path for path in output_paths(settings, trainer, name) if path.exists()]
    if trainer == "dreambooth" and not taken and name in _checkpoint_names(settings):
        raise InvalidRequest("name", f"{name!r} is an installed model; choose another name")
    for target in taken:
        made = owner_of(target)
        if made is None or made.get("owner") != owner:
            raise InvalidRequest("name", f"{name!r} already exists and is not yours; choose another name")
        if not overwrite:
            raise InvalidRequest("name", f"you already trained {name!r}; set overwrite to replace it")
    inputs = settings.data_dir / "jobs" / "inputs"
    stored = [{"file": store_image(image, inputs), "caption": caption} for image, caption in images]
    params = {**(options or {}), "trainer": trainer, "name": name, "model": model, "images": stored}
    if concepts:
        if trainer != "dreambooth":
            raise InvalidRequest(
                "concepts", "a concepts list trains a Dreambooth checkpoint (kind dreambooth)"
            )
        params.update(concept_params(concepts, inputs))
    return LongJob(JobKind.TRAIN, params)


def _checkpoint_names(settings: Settings) -> list[str]:
    from engine.models.registry import ModelKind, ModelRegistry

    return ModelRegistry.from_settings(settings).names(ModelKind.CHECKPOINT)
