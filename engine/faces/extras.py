"""The Extras tab's face restorers: GFPGAN, then CodeFormer, after the upscale (A1111's postprocessing order:
upscale 1000, GFPGAN 2000, CodeFormer 3000), each blended with its input by its visibility, and the keys A1111
writes for them. The job's fields are `gfpgan_visibility`, `codeformer_visibility` and `codeformer_weight`
(A1111's API names); the check needs no torch."""

from __future__ import annotations

from typing import Any

from PIL import Image

from core.errors import InvalidRequest, ModelNotFound
from engine.faces.naming import (
    DEFAULT_CODEFORMER_WEIGHT,
    check_fraction,
    detector_entry,
    postprocess_keys,
    restorer_entry,
)
from engine.models.registry import ModelRegistry

FIELDS = ("gfpgan_visibility", "codeformer_visibility", "codeformer_weight")


def _number(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(name, f"{value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise InvalidRequest(name, f"{value!r} is not a number from 0 to 1") from None
    return check_fraction(name, number)


def faces_params(params: dict[str, Any], registry: ModelRegistry) -> dict[str, float]:
    """The face fields of an Extras job, checked (0..1; the restorers asked for and the detector installed);
    only those that do something are kept."""
    gfpgan = _number(params, "gfpgan_visibility", 0.0)
    codeformer = _number(params, "codeformer_visibility", 0.0)
    weight = _number(params, "codeformer_weight", DEFAULT_CODEFORMER_WEIGHT)
    kept: dict[str, float] = {}
    for option, name, visibility in (
        ("gfpgan_visibility", "GFPGAN", gfpgan),
        ("codeformer_visibility", "CodeFormer", codeformer),
    ):
        if visibility > 0:
            try:
                restorer_entry(registry, name)
                detector_entry(registry)
            except ModelNotFound as exc:  # named by the field that asked for it
                raise type(exc)(option, exc.message) from None
            kept[option] = visibility
    if codeformer > 0:
        kept["codeformer_weight"] = weight
    return kept


def restore_for_extras(
    image: Image.Image, params: dict[str, Any], registry: ModelRegistry, device: str
) -> tuple[Image.Image, dict[str, str]]:
    """`image` through GFPGAN then CodeFormer as the job's fields ask, and A1111's keys for them."""
    gfpgan = float(params.get("gfpgan_visibility") or 0.0)
    codeformer = float(params.get("codeformer_visibility") or 0.0)
    weight = float(params.get("codeformer_weight", DEFAULT_CODEFORMER_WEIGHT))
    if gfpgan <= 0 and codeformer <= 0:
        return image, {}
    from engine.faces.files import FACES
    from engine.faces.restore import restore_faces, with_visibility

    detector = FACES.detector(registry, device)
    for name, visibility in (("GFPGAN", gfpgan), ("CodeFormer", codeformer)):
        if visibility > 0:
            restorer = FACES.restorer(registry, name, device)
            restored = restore_faces(image, restorer, detector, weight, FACES.short_side)
            image = with_visibility(image, restored, visibility)
    return image, postprocess_keys(gfpgan, codeformer, weight)
