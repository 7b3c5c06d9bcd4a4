"""Requests to JSON and back, so a job's request survives in SQLite and input images on disk.

Input images are stored when the job is accepted (never fetched again when it runs): as PNG files named by
the sha256 of their bytes under `<data_dir>/jobs/inputs/`, so the same upload is stored once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from core.errors import InvalidRequest
from core.files import atomic_write
from engine.requests import (
    ControlMode,
    ControlNetUnit,
    ControlResize,
    GenerationRequest,
    HiresFix,
    Img2ImgRequest,
    InpaintArea,
    InpaintRequest,
    MaskedContent,
    ResizeMode,
    hires_upscaler,
)
from jobs.records import JobKind

AnyRequest = GenerationRequest | Img2ImgRequest | InpaintRequest


def _params_to_json(params: GenerationRequest, inputs: Path | None) -> dict[str, Any]:
    data = dataclasses.asdict(dataclasses.replace(params, controlnet=()))
    if params.hires is not None:
        data["hires"] = {**dataclasses.asdict(params.hires), "upscaler": str(params.hires.upscaler)}
    if params.controlnet:  # ControlNet units: their control images stored like input images
        if inputs is None:
            raise InvalidRequest("controlnet", "this command takes no ControlNet units")
        data["controlnet"] = [_unit_to_json(unit, inputs) for unit in params.controlnet]
    return data


def _unit_to_json(unit: ControlNetUnit, inputs: Path) -> dict[str, Any]:
    data = {f.name: getattr(unit, f.name) for f in dataclasses.fields(unit) if f.name != "image"}
    data.update(control_mode=unit.control_mode.value, resize_mode=unit.resize_mode.value)
    data["image"] = None if unit.image is None else store_image(unit.image, inputs)
    return data


def _params_from_json(data: dict[str, Any], inputs: Path | None) -> GenerationRequest:
    values = dict(data)
    if values.get("hires") is not None:
        hires = dict(values["hires"])
        values["hires"] = HiresFix(**{**hires, "upscaler": hires_upscaler(hires["upscaler"])})
    units = values.pop("controlnet", None) or []
    if units and inputs is None:
        raise ValueError("a request with ControlNet units needs the folder of its stored images")
    values["controlnet"] = tuple(_unit_from_json(unit, inputs) for unit in units)  # type: ignore[arg-type]
    return GenerationRequest(**values)


def _unit_from_json(data: dict[str, Any], inputs: Path) -> ControlNetUnit:
    image = data.get("image")
    return ControlNetUnit(
        **{
            **data,
            "control_mode": ControlMode(data["control_mode"]),
            "resize_mode": ControlResize(data["resize_mode"]),
            "image": None if image is None else load_image(inputs, image),
        }
    )


def store_image(image: Image.Image, folder: Path, texts: dict[str, str] | None = None) -> str:
    """Save an input image as PNG under its content hash (atomically) and return the file name; `texts`
    (another program's text chunks, kept for the result) are stored in it."""
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    for key, value in (texts or {}).items():
        info.add_text(key, value)  # iTXt when not Latin-1
    image.save(buffer, format="PNG", pnginfo=info)
    data = buffer.getvalue()
    name = hashlib.sha256(data).hexdigest() + ".png"
    path = folder / name
    if not path.exists():
        atomic_write(path, data)
    return name


def load_image(folder: Path, name: str) -> Image.Image:
    """An input image stored by `store_image` (the name comes from our own row, never from a user)."""
    if "/" in name or "\\" in name or not name.endswith(".png"):
        raise ValueError(f"bad stored image name {name!r}")
    with Image.open(folder / name) as image:
        return image.convert("RGBA" if image.mode in ("RGBA", "LA") else image.mode).copy()


def stored_texts(folder: Path, name: str) -> dict[str, str]:
    """The text chunks `store_image` kept with an input image."""
    if "/" in name or "\\" in name or not name.endswith(".png"):
        raise ValueError(f"bad stored image name {name!r}")
    with Image.open(folder / name, formats=["PNG"]) as image:
        return {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}


def request_to_json(request: AnyRequest, inputs: Path) -> tuple[JobKind, dict[str, Any]]:
    """The job kind and a JSON-able dict of the request; input images are written to `inputs`."""
    if isinstance(request, GenerationRequest):
        return JobKind.IMAGINE, {"params": _params_to_json(request, inputs)}
    common = {
        "params": _params_to_json(request.params, inputs),
        "image": store_image(request.image, inputs),
        "denoising_strength": request.denoising_strength,
        "resize_mode": request.resize_mode.value,
    }
    if isinstance(request, Img2ImgRequest):
        return JobKind.IMG2IMG, {**common, "noise_multiplier": request.noise_multiplier}
    return JobKind.INPAINT, {
        **common,
        "mask": store_image(request.mask, inputs),
        "mask_blur": request.mask_blur,
        "masked_content": request.masked_content.value,
        "inpaint_area": request.inpaint_area.value,
        "padding": request.padding,
    }


def request_from_json(kind: JobKind, data: dict[str, Any], inputs: Path) -> AnyRequest:
    params = _params_from_json(data["params"], inputs)
    if kind is JobKind.IMAGINE:
        return params
    image = load_image(inputs, data["image"])
    resize_mode = ResizeMode(data["resize_mode"])
    if kind is JobKind.IMG2IMG:
        return Img2ImgRequest(
            params, image, data["denoising_strength"], resize_mode, data["noise_multiplier"]
        )
    if kind is JobKind.INPAINT:
        return InpaintRequest(
            params,
            image,
            load_image(inputs, data["mask"]),
            data["denoising_strength"],
            resize_mode,
            data["mask_blur"],
            MaskedContent(data["masked_content"]),
            InpaintArea(data["inpaint_area"]),
            data["padding"],
        )
    raise ValueError(f"no request codec for job kind {kind}")
