"""A1111's Extras tab over HTTP: `POST /sdapi/v1/extra-single-image` and `POST /sdapi/v1/extra-batch-images`
as an `upscale` queue job of the caller (jobs/upscaling.py), and the model upscalers in `GET
/sdapi/v1/upscalers`.

The bodies have A1111's fields (`ExtrasSingleImageRequest`, `ExtrasBatchImagesRequest` with its `imageList`
of `{data, name}`, modules/api/models.py); Salon honours "Scale by" (`resize_mode` 0, `upscaling_resize`) and
"Scale to" (`resize_mode` 1, `upscaling_resize_w`/`_h`, `upscaling_crop`) with a model upscaler (`upscaler_1`)
and a second one blended in (`upscaler_2`, `extras_upscaler_2_visibility`), then the face restorers
(`gfpgan_visibility`, `codeformer_visibility`, `codeformer_weight`: commands/faces.py). The answer is
A1111's: `html_info` (the postprocessing text) and `image` or `images` (base64 PNGs, with A1111's
`postprocessing` and `extras` text chunks).
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
from commands.faces import with_faces
from commands.upscaling import batch_upscale_job, input_from_bytes, upscale_job
from core.errors import InvalidRequest
from engine.models.registry import ModelKind, ModelRegistry
from jobs.records import JobStatus
from jobs.upscaling import MAX_BATCH_IMAGES

_SCALE_IN_NAME = re.compile(r"(\d)[xX]|[xX](\d)")  # "4x-UltraSharp", "RealESRGAN_x2": as A1111's UI reads it
_FIELD = {
    "upscaler": "upscaler_1",
    "scale": "upscaling_resize",
    "to": "upscaling_resize_w",
    "upscaler_2_visibility": "extras_upscaler_2_visibility",
    "images": "imageList",
}


class ExtrasBaseBody(_Body):
    """A1111's `ExtrasBaseRequest` (its fields and defaults)."""

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


class ExtrasSingleImageBody(ExtrasBaseBody):
    """A1111's `ExtrasSingleImageRequest`."""

    image: str = ""


class FileData(BaseModel):
    """One picture of a batch: base64 data and its file name."""

    data: str
    name: str


class ExtrasBatchImagesBody(ExtrasBaseBody):
    """A1111's `ExtrasBatchImagesRequest`."""

    imageList: list[FileData]  # noqa: N815 (A1111's field name)


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


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


def _refuse_what_salon_does_not_do(body: ExtrasBaseBody) -> None:
    if body.resize_mode not in (0, 1):
        raise Unsupported("resize_mode", "0 (scale by upscaling_resize) or 1 (scale to upscaling_resize_w/h)")
    faces = body.gfpgan_visibility > 0 or body.codeformer_visibility > 0  # A1111: face restoration alone
    if body.upscaler_1 in ("", "None") and not faces:
        raise Unsupported(
            "upscaler_1",
            "name a model upscaler (GET /sdapi/v1/upscalers lists them), or restore faces alone "
            "(gfpgan_visibility, codeformer_visibility)",
        )


def _plan(body: ExtrasBaseBody) -> dict[str, Any]:
    """The job's plan options from A1111's fields (a second upscaler at visibility 0 does not run, as in
    A1111)."""
    visible = body.upscaler_2 not in ("", "None") and body.extras_upscaler_2_visibility > 0
    return {
        "to": (body.upscaling_resize_w, body.upscaling_resize_h) if body.resize_mode == 1 else None,
        "crop": body.upscaling_crop,
        "upscaler_2": body.upscaler_2 if visible else None,
        "upscaler_2_visibility": body.extras_upscaler_2_visibility if visible else 0.0,
    }


def _field(error: InvalidRequest) -> InvalidRequest:
    """The error naming A1111's field (`images[2]` → `imageList[2]`)."""
    option = error.option
    if option.startswith("images["):
        option = "imageList" + option.removeprefix("images")
    return InvalidRequest(_FIELD.get(option, option), error.message)


async def _finished(service, make_job, body, who):
    """The record of the job `make_job()` builds, with the body's face restoration, run to its end; a bad value
    is refused naming the body's field."""
    try:
        job = make_job()
        job = with_faces(job, body.gfpgan_visibility, body.codeformer_visibility, body.codeformer_weight)
        record = await service.run_long(job, who)
    except InvalidRequest as error:
        raise _field(error) from None
    if record.status is not JobStatus.DONE:
        raise RuntimeError(f"job {record.id} {record.status.value}: {record.error or ''}")
    return record


def add_extras_routes(app: FastAPI, service) -> None:
    """`POST /sdapi/v1/extra-single-image` (service: api.service.ApiService)."""
    settings = service.settings

    @app.post("/sdapi/v1/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(body: ExtrasSingleImageBody, who: Caller):
        _refuse_what_salon_does_not_do(body)
        if not body.image:
            raise Unsupported("image", "send the image as base64")
        source = input_from_bytes(
            base64_bytes(body.image, settings.limits, "image"), "extras", settings.limits
        )
        record = await _finished(
            service,
            lambda: upscale_job(settings, source, body.upscaler_1, body.upscaling_resize, **_plan(body)),
            body,
            who,
        )
        path = await service.queue.results.local(record.results[0])
        from engine.upscaling.extras import read_postprocessing

        text = read_postprocessing(path) or ""
        return {
            "html_info": f"<p>{html.escape(text)}</p>",
            "image": encode_file(path) if body.show_extras_results else None,
        }

    @app.post("/sdapi/v1/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extra_batch_images(body: ExtrasBatchImagesBody, who: Caller):
        _refuse_what_salon_does_not_do(body)
        if not body.imageList:
            raise Unsupported("imageList", "send one or more images")
        if len(body.imageList) > MAX_BATCH_IMAGES:
            raise Unsupported(
                "imageList", f"{len(body.imageList)} images; at most {MAX_BATCH_IMAGES} in one batch"
            )
        sources = []
        for index, item in enumerate(body.imageList):
            field = f"imageList[{index}]"
            try:
                data = base64_bytes(item.data, settings.limits, field)
                sources.append(input_from_bytes(data, item.name or f"image-{index}", settings.limits, field))
            except InvalidRequest as error:
                raise InvalidRequest(error.option, f"{item.name}: {error.message}") from None
        record = await _finished(
            service,
            lambda: batch_upscale_job(
                settings, sources, body.upscaler_1, body.upscaling_resize, **_plan(body)
            ),
            body,
            who,
        )
        from engine.upscaling.extras import read_postprocessing

        paths = [await service.queue.results.local(result) for result in record.results]
        text = read_postprocessing(paths[-1]) or ""
        return {
            "html_info": f"<p>{html.escape(text)}</p>",
            "images": [encode_file(path) for path in paths] if body.show_extras_results else [],
        }
