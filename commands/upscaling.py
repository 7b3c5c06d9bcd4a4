"""The Extras tab's upscale for any front end: an input picture (a file, an upload or a catalog image), or a
batch of them, into an `upscale` long job (jobs/upscaling.py), which the queue checks once (the upscalers
installed, the scale's or the target's bounds). "Scale by" or "Scale to" (with "Crop to fit") and a second
upscaler blended in by its visibility make the job's plan (engine/upscaling/plan.py). A catalog image becomes
the result's parent, with relation "upscale"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from catalog.records import ImageRecord, Relation
from commands.generation import LongJob
from commands.options import generation_info, load_input_image, other_texts
from config import Limits
from core.errors import InvalidRequest
from engine.upscaling.extras import DEFAULT_SCALE
from engine.upscaling.plan import NO_UPSCALER, ExtrasPlan
from jobs.codec import store_image
from jobs.records import JobKind
from jobs.upscaling import inputs_folder, safe_stem

_SIZE = re.compile(r"(\d{1,5})\s*[xX×]\s*(\d{1,5})")


@dataclass(frozen=True)
class UpscaleInput:
    """A picture to upscale: its pixels, its own infotext (kept in the result), a name for the result's file,
    and its catalog id when it is a catalog image."""

    image: Image.Image
    parameters: str | None
    stem: str
    parent_id: int | None = None
    texts: dict[str, str] = field(default_factory=dict)  # its other PNG text chunks, carried as A1111 does


def input_from_bytes(data: bytes, name: str, limits: Limits, option: str = "image") -> UpscaleInput:
    """An uploaded or local file, checked from its header (InvalidImage names `option`)."""
    image = load_input_image(data, limits, option)
    parameters = generation_info(data, limits, option)
    return UpscaleInput(image, parameters, safe_stem(Path(name).stem), texts=other_texts(data))


def input_from_record(record: ImageRecord, limits: Limits) -> UpscaleInput:
    """A catalog image (its file read and checked like an upload); the result will be its child."""
    try:
        data = Path(record.path).read_bytes()
    except OSError:
        raise InvalidRequest("image", f"image {record.id}'s file is missing") from None
    found = input_from_bytes(data, Path(record.path).name, limits)
    return UpscaleInput(found.image, found.parameters, found.stem, record.id, found.texts)


def parse_scale(text: str | float | None) -> float:
    """The scale typed (A1111's "Upscale by"); None or empty: the default, 4. The queue checks its bounds."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return DEFAULT_SCALE
    try:
        return float(text)
    except ValueError:
        raise InvalidRequest("scale", f"{text!r} is not a number, e.g. 2 or 4") from None


def parse_size(text: str | None, option: str = "to") -> tuple[int, int] | None:
    """A "Scale to" size typed as `WIDTHxHEIGHT` (e.g. 1920x1080); None or empty: none. The queue checks
    its bounds."""
    if text is None or not text.strip():
        return None
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidRequest(option, f"{text!r} is not WIDTHxHEIGHT, e.g. 1920x1080")
    return int(match.group(1)), int(match.group(2))


def extras_plan(
    upscaler: str | None,
    scale: float = DEFAULT_SCALE,
    *,
    to: tuple[int, int] | None = None,
    crop: bool = False,
    upscaler_2: str | None = None,
    upscaler_2_visibility: float = 0.0,
) -> ExtrasPlan:
    """What the Extras tab's upscale does: "Scale by" `scale`, or "Scale to" `to` (with "Crop to fit"), and a
    second upscaler blended in by its visibility (the queue checks names and bounds). No upscaler (None,
    "None"): no upscale at all, as in A1111 — the job must then restore faces (the queue checks it)."""
    if upscaler is None or upscaler.strip() in NO_UPSCALER:
        return ExtrasPlan("", 1.0)
    second = None if upscaler_2 is None or upscaler_2.strip() in NO_UPSCALER else upscaler_2.strip()
    if second is not None and not upscaler_2_visibility:
        raise InvalidRequest(
            "upscaler_2_visibility", "give the second upscaler a visibility above 0, up to 1"
        )
    return ExtrasPlan(upscaler.strip(), scale, to, crop, second, upscaler_2_visibility if second else 0.0)


def _stored(settings, source: UpscaleInput) -> dict:
    return {
        "image": store_image(source.image.convert("RGB"), inputs_folder(settings), source.texts),
        "parameters": source.parameters,
        "stem": source.stem,
    }


def upscale_job(
    settings, source: UpscaleInput, upscaler: str | None, scale: float = DEFAULT_SCALE, **more
) -> LongJob:
    """The `upscale` job for `source` (`more`: extras_plan's "scale to" and second-upscaler options): its
    picture stored with the queue's inputs, its catalog parent (if any) in the job's meta."""
    params = {**extras_plan(upscaler, scale, **more).to_params(), **_stored(settings, source)}
    meta = None
    if source.parent_id is not None:
        meta = {"parent_id": source.parent_id, "relation": Relation.UPSCALE.value}
    return LongJob(JobKind.UPSCALE, params, meta)


def batch_upscale_job(
    settings, sources: list[UpscaleInput], upscaler: str | None, scale: float = DEFAULT_SCALE, **more
) -> LongJob:
    """One `upscale` job for several pictures (A1111's "Batch Process"): each stored with the queue's inputs,
    processed one after the other, each result named after its source."""
    if not sources:
        raise InvalidRequest("images", "no picture to upscale")
    plan = extras_plan(upscaler, scale, **more)
    return LongJob(JobKind.UPSCALE, {**plan.to_params(), "images": [_stored(settings, s) for s in sources]})
