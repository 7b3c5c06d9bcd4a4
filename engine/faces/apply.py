"""Face restoration where the engine applies it: generation's "Restore faces" (A1111 restores each decoded
image, after the hires pass, and writes `Face restoration: <name>`). The runner calls `restore_generated`
after each batch; torch and the models load only when a request asks for restoration."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from engine.faces.naming import INFOTEXT_KEY
from engine.models.registry import ModelRegistry


def restore_generated(
    registry: ModelRegistry,
    preps: Sequence,
    chunk: Sequence,
    images: Sequence[Image.Image],
    device: object,
    infos: list[dict[str, str | None]],
) -> list[Image.Image]:
    """A batch's decoded `images` (one per slot of `chunk`, each slot's request in `preps`), each with its
    faces restored when its request asks for it (requests of one batch may differ in this); that request's
    infotext keys (`infos`, by request) get A1111's `Face restoration`."""
    out = list(images)
    for index, (slot, image) in enumerate(zip(chunk, images, strict=True)):
        request = preps[slot.request].params
        if request.face_restorer is None:
            continue
        from engine.faces.files import FACES
        from engine.faces.restore import restore_faces

        restorer = FACES.restorer(registry, request.face_restorer, str(device))
        detector = FACES.detector(registry, str(device))
        out[index] = restore_faces(image, restorer, detector, request.code_former_weight, FACES.short_side)
        infos[slot.request] = with_face_infotext(infos[slot.request], request.face_restorer)
    return out


def with_face_infotext(info: dict[str, str | None], name: str) -> dict[str, str | None]:
    """The infotext keys with `Face restoration: name` where A1111 writes it (before `Size`, else last)."""
    if INFOTEXT_KEY in info:
        return info
    out: dict[str, str | None] = {}
    for key, value in info.items():
        if key == "Size":
            out[INFOTEXT_KEY] = name
        out[key] = value
    out.setdefault(INFOTEXT_KEY, name)
    return out
