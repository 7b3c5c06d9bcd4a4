"""The Extras tab's upscale for any front end: an input picture (a file, an upload or a catalog image) into an
`upscale` long job (jobs/upscaling.py), which the queue checks once (the upscaler installed, the scale's
bounds). A catalog image becomes the result's parent, with relation "upscale"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from catalog.records import ImageRecord, Relation
from commands.generation import LongJob
from commands.options import generation_info, load_input_image
from config import Limits
from core.errors import InvalidRequest
from engine.upscaling.extras import DEFAULT_SCALE
from jobs.codec import store_image
from jobs.records import JobKind
from jobs.upscaling import inputs_folder, safe_stem


@dataclass(frozen=True)
class UpscaleInput:
    """A picture to upscale: its pixels, its own infotext (kept in the result), a name for the result's file,
    and its catalog id when it is a catalog image."""

    image: Image.Image
    parameters: str | None
    stem: str
    parent_id: int | None = None


def input_from_bytes(data: bytes, name: str, limits: Limits, option: str = "image") -> UpscaleInput:
    """An uploaded or local file, checked from its header (InvalidImage names `option`)."""
    image = load_input_image(data, limits, option)
    return UpscaleInput(image, generation_info(data, limits, option), safe_stem(Path(name).stem))


def input_from_record(record: ImageRecord, limits: Limits) -> UpscaleInput:
    """A catalog image (its file read and checked like an upload); the result will be its child."""
    try:
        data = Path(record.path).read_bytes()
    except OSError:
        raise InvalidRequest("image", f"image {record.id}'s file is missing") from None
    found = input_from_bytes(data, Path(record.path).name, limits)
    return UpscaleInput(found.image, found.parameters, found.stem, record.id)


def parse_scale(text: str | float | None) -> float:
    """The scale typed (A1111's "Upscale by"); None or empty: the default, 4. The queue checks its bounds."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return DEFAULT_SCALE
    try:
        return float(text)
    except ValueError:
        raise InvalidRequest("scale", f"{text!r} is not a number, e.g. 2 or 4") from None


def upscale_job(settings, source: UpscaleInput, upscaler: str | None, scale: float) -> LongJob:
    """The `upscale` job for `source`: its picture stored with the queue's inputs, its catalog parent (if any)
    in the job's meta."""
    if not upscaler or not upscaler.strip():
        raise InvalidRequest("upscaler", "name an upscaler (`salon models` lists them)")
    params = {
        "upscaler": upscaler.strip(),
        "scale": scale,
        "image": store_image(source.image.convert("RGB"), inputs_folder(settings)),
        "parameters": source.parameters,
        "stem": source.stem,
    }
    meta = None
    if source.parent_id is not None:
        meta = {"parent_id": source.parent_id, "relation": Relation.UPSCALE.value}
    return LongJob(JobKind.UPSCALE, params, meta)
