"""What SD 3.5 and Flux requests may ask, and their defaults: no torch, so the queue checks it before a job runs.

These families run through diffusers' own pipelines (engine.tasks.flow) with the flow-matching Euler sampler
and its schedule (Forge's "Euler" / "Simple"); what those pipelines cannot do is refused by name here, from the
registry entry's family (engine.models.flow_files reads it from `model_index.json` or the file's header).
Defaults follow the model cards and Forge: SD 3.5 large 28 steps CFG 3.5, medium 40 steps CFG 4.5; Flux dev
20 steps, CFG 1 with a distilled guidance of 3.5 (Forge's `Distilled CFG Scale`), schnell 4 steps, unguided.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.errors import InvalidRequest
from engine.models.flow_files import FLOW_SIDE, FlowKind
from engine.prompts.prompt_schedule import needs_plan
from engine.prompts.prompt_syntax import extract_extra_networks
from engine.requests import AUTOMATIC, GenerationRequest, Img2ImgRequest, InpaintRequest, ResizeMode

FLOW_SAMPLER = "Euler"  # the flow-matching Euler sampler (FlowMatchEulerDiscreteScheduler)
FLOW_SCHEDULE = "Simple"  # its schedule as Forge names it: the model's shifted sigmas
MAX_DISTILLED_CFG = 30.0  # Forge's `Distilled CFG Scale` slider: 0 to 30
SHIFT_RANGE = (0.1, 100.0)  # the schedule's shift: sigma' = shift·sigma / (1 + (shift − 1)·sigma)


@dataclass(frozen=True)
class FlowDefaults:
    """A variant's defaults: steps, CFG scale, and Flux dev's distilled guidance (None: the model has none)."""

    steps: int
    cfg_scale: float
    distilled_cfg_scale: float | None = None
    size: int = FLOW_SIDE


DEFAULTS = {
    ("sd3", "large"): FlowDefaults(28, 3.5),
    ("sd3", "medium"): FlowDefaults(40, 4.5),
    ("flux", "dev"): FlowDefaults(20, 1.0, 3.5),
    ("flux", "schnell"): FlowDefaults(4, 1.0),
}


def flow_defaults(kind: FlowKind) -> FlowDefaults:
    return DEFAULTS[(kind.family, kind.variant)]


def check_flow_options(p: GenerationRequest, kind: FlowKind | None, model: str = "this model") -> None:
    """The flow families' own options (`distilled_cfg_scale`, `shift`) refused by name where the checkpoint
    (`kind`; None: SD 1.x / SDXL, named `model`) has no use for them."""
    if kind is None:
        for option in ("distilled_cfg_scale", "shift"):
            if getattr(p, option) is not None:
                raise InvalidRequest(
                    option, f"{option} applies to SD 3.5 and Flux models only; {model} is SD 1.x / SDXL"
                )
        return
    if p.distilled_cfg_scale is not None and flow_defaults(kind).distilled_cfg_scale is None:
        raise InvalidRequest(
            "distilled_cfg_scale",
            f"distilled_cfg_scale applies to Flux dev models only; {kind.label} has no distilled guidance",
        )


def check_flow_request(request: GenerationRequest | Img2ImgRequest | InpaintRequest, kind: FlowKind) -> None:
    """Refuse, naming the option, what SD 3.5 / Flux cannot do here (the limits were checked before)."""
    label = kind.label
    check_flow_options(request.params, kind)
    if isinstance(request, InpaintRequest):
        raise InvalidRequest("inpaint", f"inpainting is not supported on {label} models; use img2img")
    p = request.params
    if p.sampler != FLOW_SAMPLER or p.schedule not in (AUTOMATIC, FLOW_SCHEDULE):
        raise InvalidRequest(
            "sampler",
            f"{p.sampler} / {p.schedule} is not available for {label} models; "
            f"use sampler {FLOW_SAMPLER} with schedule {FLOW_SCHEDULE} (the flow-matching Euler)",
        )
    refused = {
        "hires": p.hires is not None,
        "refiner": p.refiner is not None,
        "controlnet": bool(p.controlnet),
        "blend": p.blend is not None,
        "tiling": p.tiling,
        "vae": p.vae is not None and p.vae.lower() not in ("automatic", "none"),
        "clip_skip": p.clip_skip > 1,
        "eta": p.eta is not None,
        "eta_noise_seed_delta": p.eta_noise_seed_delta != 0,
        "seed_resize_from": p.seed_resize_from_w > 0,
        "face_restorer": getattr(p, "face_restorer", None) is not None,  # not run on this path yet
    }
    if isinstance(request, Img2ImgRequest):
        refused["variation_seed"] = p.variation_strength > 0
        refused["noise_multiplier"] = request.noise_multiplier != 1.0
        refused["resize_mode"] = request.resize_mode is not ResizeMode.JUST_RESIZE
    for option, asked in refused.items():
        if asked:
            raise InvalidRequest(option, f"{option} is not supported on {label} models")
    prompt, networks = extract_extra_networks(p.prompt)
    for network in networks:
        if network.kind not in ("lora", "lyco"):
            raise InvalidRequest("prompt", f"<{network.kind}:…> is not supported on {label} models")
    if needs_plan(prompt, p.negative_prompt):
        raise InvalidRequest(
            "prompt", f"prompt editing, alternation and AND are not supported on {label} models"
        )


def with_family_defaults(
    request: GenerationRequest, kind: FlowKind | None, options: object
) -> GenerationRequest:
    """A request for an SD 3.5 / Flux checkpoint (`kind`) with its family's sampler, schedule, steps and CFG
    where the user's `options` gave none (Salon's and a server's defaults are made for SD 1.x / SDXL), and
    without a server's default VAE or refiner; other checkpoints' requests (kind None) unchanged."""
    if kind is None:
        return request
    defaults = flow_defaults(kind)
    return replace(
        request,
        sampler=getattr(options, "sampler", None) or FLOW_SAMPLER,
        schedule=getattr(options, "schedule", None) or FLOW_SCHEDULE,
        steps=_given(getattr(options, "steps", None), defaults.steps),
        cfg_scale=_given(getattr(options, "cfg_scale", None), defaults.cfg_scale),
        vae=request.vae if getattr(options, "vae", None) is not None else None,
        refiner=request.refiner if getattr(options, "refiner", None) not in (None, "None") else None,
    )


def _given(value, default):
    return default if value is None else value
