"""A1111's Extras tab over HTTP: `POST /sdapi/v1/extra-single-image` as an `upscale` queue job of the caller
(jobs/upscaling.py), and the model upscalers in `GET /sdapi/v1/upscalers`.

The body has A1111's fields (`ExtrasSingleImageRequest`, modules/api/models.py); Salon honours "Scale by"
(`resize_mode` 0, `upscaling_resize`) with one model upscaler (`upscaler_1`) and refuses by name what it does
not do yet (`resize_mode` 1, a second upscaler, face restoration). The answer is A1111's: `html_info` (the
postprocessing text) and `image` (base64 PNG, with A1111's `postprocessing` and `extras` text chunks).
"""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from api.auth import Caller
from api.schemas import _Body
from api.translate import Unsupported, base64_bytes, encode_file
from commands.upscaling import input_from_bytes, upscale_job
from core.errors import InvalidRequest
from engine.models.registry import ModelKind, ModelRegistry
from jobs.records import JobStatus

_SCALE_IN_NAME = re.compile(r"(\d)[xX]|[xX](\d)")  # "4x-UltraSharp", "RealESRGAN_x2": as A1111's UI reads it
_FIELD = {"upscaler": "upscaler_1", "scale": "upscaling_resize"}


class ExtrasSingleImageBody(_Body):
    """A1111's `ExtrasSingleImageRequest` (its fields and defaults)."""

    resize_mode: int = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False
    image: str = ""


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


def model_upscalers(registry: ModelRegistry) -> list[dict[str, Any]]:
    """The installed model upscalers as A1111 lists them (`model_path`: the file's name, never its path)."""
    items = []
    for entry in registry.entries(ModelKind.UPSCALER):
        match = _SCALE_IN_NAME.search(entry.name)
        scale = float(match.group(1) or match.group(2)) if match else 4.0
        items.append(
            {
                "name": entry.name,
                "model_name": entry.path.parent.name,
                "model_path": entry.path.name,
                "model_url": None,
                "scale": scale,
            }
        )
    return items


def _refuse_what_salon_does_not_do(body: ExtrasSingleImageBody) -> None:
    if body.resize_mode != 0:
        raise Unsupported("resize_mode", "only 0 (scale by upscaling_resize) is supported")
    for name in ("gfpgan_visibility", "codeformer_visibility"):
        if getattr(body, name):
            raise Unsupported(name, "face restoration is not built yet; send 0")
    if body.upscaler_2 not in ("", "None") and body.extras_upscaler_2_visibility > 0:
        raise Unsupported("upscaler_2", "a second upscaler is not supported; send None")
    if body.upscaler_1 in ("", "None"):
        raise Unsupported("upscaler_1", "name a model upscaler (GET /sdapi/v1/upscalers lists them)")
    if not body.image:
        raise Unsupported("image", "send the image as base64")


def add_extras_routes(app: FastAPI, service) -> None:
    """`POST /sdapi/v1/extra-single-image` (service: api.service.ApiService)."""
    settings = service.settings

    @app.post("/sdapi/v1/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(body: ExtrasSingleImageBody, who: Caller):
        _refuse_what_salon_does_not_do(body)
        source = input_from_bytes(
            base64_bytes(body.image, settings.limits, "image"), "extras", settings.limits
        )
        try:
            job = upscale_job(settings, source, body.upscaler_1, body.upscaling_resize)
            record = await service.run_long(job, who)
        except InvalidRequest as error:
            raise InvalidRequest(_FIELD.get(error.option, error.option), error.message) from None
        if record.status is not JobStatus.DONE:
            raise RuntimeError(f"job {record.id} {record.status.value}: {record.error or ''}")
        path = await service.queue.results.local(record.results[0])
        from engine.upscaling.extras import read_postprocessing

        text = read_postprocessing(path) or ""
        return {
            "html_info": f"<p>{html.escape(text)}</p>",
            "image": encode_file(path) if body.show_extras_results else None,
        }
