"""A hires fix's model upscaler checked by name, without torch: the queue's one check at submit."""

from __future__ import annotations

import dataclasses

from core.errors import ModelNotFound, ModelRefused
from engine.models.registry import ModelKind, ModelRegistry
from engine.requests import HiresUpscaler, Request, with_params


def with_installed_upscaler(request: Request, registry: ModelRegistry) -> Request:
    """The request with its hires fix's model upscaler (if it names one) spelled as installed; a name that is
    not installed is a ModelNotFound naming `hires_upscaler` and the installed ones."""
    params = request.params
    hires = params.hires
    if hires is None or isinstance(hires.upscaler, HiresUpscaler):
        return request
    try:
        entry = registry.find_fresh(ModelKind.UPSCALER, hires.upscaler)
    except ModelRefused as exc:
        raise ModelRefused("hires_upscaler", exc.message) from None
    except ModelNotFound as exc:
        builtin = ", ".join(member.value for member in HiresUpscaler)
        raise ModelNotFound("hires_upscaler", f"{exc.message} (or one of: {builtin})") from None
    hires = dataclasses.replace(hires, upscaler=entry.name)
    return with_params(request, dataclasses.replace(params, hires=hires))
