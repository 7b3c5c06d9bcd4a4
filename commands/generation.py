"""Generation for any front end: a request from a front end's plain options (`generation_request_for`), and
submitting a job and following it to the end (`submit_and_wait`).

`generation_request_for` is where every front end's /imagine, /img2img and /inpaint decide what a request
holds: the options given, else the server's or channel's defaults (community settings), else Salon's
defaults (engine/requests.py); styles, LoRA and embedding options added to the prompt; the default size.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from commands.hires_options import hires_extras
from commands.options import generation_request
from commands.styles import apply_style, load_styles
from community.settings import CommunitySettings
from config import Limits, Settings
from core.errors import InvalidRequest, ModelNotFound
from engine.controlnet.unit_text import parse_unit
from engine.faces.naming import DEFAULT_CODEFORMER_WEIGHT, DEFAULT_RESTORER, check_restoration
from engine.models.registry import ModelKind, ModelRegistry, native_resolution
from engine.requests import (
    AUTOMATIC,
    DEFAULT_CFG_SCALE,
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    ControlNetUnit,
    GenerationRequest,
    vae_choice,
)
from engine.tasks.flow_rules import with_family_defaults
from engine.validation import parse_size
from jobs.codec import AnyRequest
from jobs.queue import JobQueue
from jobs.records import JobEvent, JobKind, JobRecord
from jobs.running import WorkerBusy

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class GenerationOptions:
    """What a user typed for a generation (slash options, CLI flags); None = not given: the server's default
    applies, else Salon's."""

    prompt: str
    negative_prompt: str = ""
    model: str | None = None
    sampler: str | None = None
    schedule: str | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    size: str | None = None  # "WIDTHxHEIGHT" (the CLI's --size); width and height win when given
    width: int | None = None
    height: int | None = None
    batch_size: int | None = None
    batch_count: int | None = None
    clip_skip: int | None = None
    tiling: bool = False
    variation_seed: int = -1
    variation_strength: float = 0.0
    hires_scale: float | None = None
    hires_steps: int = 0
    hires_denoising_strength: float = 0.7
    hires_upscaler: str = "Latent"
    # The hires pass's own prompts, sampler, schedule and CFG ("" / None: the first pass's), and "resize width
    # and height to" ("WIDTHxHEIGHT", one side may be 0) instead of the scale (it turns the hires fix on).
    hires_prompt: str = ""
    hires_negative_prompt: str = ""
    hires_sampler: str | None = None
    hires_schedule: str | None = None
    hires_cfg_scale: float | None = None
    hires_resize: str | None = None
    style: str | None = None
    lora: str | None = None
    embedding: str | None = None
    styles: tuple[str, ...] = ()  # more styles, applied in order after `style` (the CLI's repeated --style)
    vae: str | None = None  # a models/VAE name, "Automatic" or "None"; None: the server's default_vae
    seed_resize_from: str | None = None  # "WIDTHxHEIGHT": A1111's resize seed from width/height
    eta: float | None = None
    eta_noise_seed_delta: int | None = None  # ENSD (a PNG's, to repeat it); None: the server's setting
    refiner: str | None = None  # A1111's refiner checkpoint; None: the server's default_refiner; "None": none
    refiner_switch_at: float | None = None  # None: the server's default_refiner_switch_at
    controlnet: tuple[ControlNetUnit, ...] = ()  # units with their control images (`controlnet_units`)
    # A1111's "Restore faces": on with `restore_faces` or a restorer's name; None: the server's
    # face_restoration_model; the weight None: the server's code_former_weight.
    restore_faces: bool = False
    face_restorer: str | None = None
    code_former_weight: float | None = None
    # SD 3.5 / Flux: Flux dev's distilled guidance and the schedule's shift; None: the model's own.
    distilled_cfg_scale: float | None = None
    shift: float | None = None


def generation_request_for(
    options: GenerationOptions,
    settings: Settings,
    registry: ModelRegistry,
    limits: Limits,
    community: CommunitySettings | None = None,
    default_size: tuple[int, int] | None = None,
) -> GenerationRequest:
    """The txt2img request (also the shared part of img2img and inpaint) from a front end's options, with
    the defaults applied: the options, else `community`'s (a server's or channel's settings), else Salon's.

    `default_size` is the size when the options give none (img2img: the input image's); else the server's
    default size, else the checkpoint's own resolution."""
    prompt, negative = options.prompt, options.negative_prompt or ""
    styles = ((options.style,) if options.style else ()) + tuple(options.styles)
    if styles:
        known = load_styles(settings.styles_file)
        for name in styles:
            prompt, negative = apply_style(known, name, prompt, negative)
    if options.lora:
        prompt += f" <lora:{registry.find_fresh(ModelKind.LORA, options.lora).name}:1>"
    if options.embedding:
        prompt += f", {registry.find_fresh(ModelKind.EMBEDDING, options.embedding).name}"
    server = community or CommunitySettings()
    model = options.model or server.default_model or settings.default_model
    if options.size:
        default_size = parse_size(options.size)
    elif default_size is None:
        if server.default_size:
            default_size = parse_size(server.default_size)
        else:
            side = native_resolution(registry.checkpoint(model))
            default_size = (side, side)
    request = generation_request(
        prompt,
        negative_prompt=negative,
        model=model,
        sampler=options.sampler or server.default_sampler or DEFAULT_SAMPLER,
        schedule=options.schedule or AUTOMATIC,
        steps=_first(options.steps, server.default_steps, DEFAULT_STEPS),
        cfg_scale=_first(options.cfg_scale, server.default_cfg_scale, DEFAULT_CFG_SCALE),
        seed=_first(options.seed, -1),
        size=(_first(options.width, default_size[0]), _first(options.height, default_size[1])),
        batch_size=_first(options.batch_size, 1),
        batch_count=_first(options.batch_count, 1),
        clip_skip=_first(options.clip_skip, 1),
        tiling=options.tiling,
        variation_seed=options.variation_seed,
        variation_strength=options.variation_strength,
        hires_scale=options.hires_scale,
        hires_steps=options.hires_steps,
        hires_denoising_strength=options.hires_denoising_strength,
        hires_upscaler=options.hires_upscaler,
    )
    request = dataclasses.replace(request, **_seed_and_vae(options, settings, registry))
    request = dataclasses.replace(request, **_refiner(options, settings, registry))
    request = dataclasses.replace(request, **_face_restoration(options, settings, registry))
    request = dataclasses.replace(request, hires=hires_extras(options, request.hires))
    request = dataclasses.replace(
        request, distilled_cfg_scale=options.distilled_cfg_scale, shift=options.shift
    )
    if options.controlnet:  # each unit's model must be installed: refused here, naming it, not in the worker
        units = tuple(
            dataclasses.replace(u, model=registry.find_fresh(ModelKind.CONTROLNET, u.model).name)
            for u in options.controlnet
        )
        request = dataclasses.replace(request, controlnet=units)
    request = with_family_defaults(request, registry.flow_kind(model), options)  # SD 3.5, Flux: their own
    return server.apply(request, limits) if community is not None else request


def _face_restoration(options: GenerationOptions, settings: Settings, registry: ModelRegistry) -> dict:
    """A1111's "Restore faces": the restorer (the option, else the server's face_restoration_model) and the
    face detector installed, refused here by name when not; the CodeFormer weight."""
    if not (options.restore_faces or options.face_restorer):
        return {}
    name = options.face_restorer or getattr(settings, "face_restoration_model", None) or DEFAULT_RESTORER
    weight = _first(
        options.code_former_weight, getattr(settings, "code_former_weight", None), DEFAULT_CODEFORMER_WEIGHT
    )
    return {"face_restorer": check_restoration(registry, name, weight), "code_former_weight": float(weight)}


def _seed_and_vae(options: GenerationOptions, settings: Settings, registry: ModelRegistry) -> dict[str, Any]:
    """The VAE (the option, else the server's default; an installed one, by its name), resize seed from,
    eta and the server's ENSD."""
    vae = vae_choice(options.vae if options.vae is not None else settings.default_vae)
    if vae is not None:
        vae = registry.find_fresh(ModelKind.VAE, vae).name
    width = height = 0
    if options.seed_resize_from:
        try:
            width, height = parse_size(options.seed_resize_from)
        except InvalidRequest:
            raise InvalidRequest(
                "seed_resize_from", f"{options.seed_resize_from!r} is not WIDTHxHEIGHT, e.g. 512x512"
            ) from None
    return {
        "vae": vae,
        "seed_resize_from_w": width,
        "seed_resize_from_h": height,
        "eta": options.eta,
        "eta_noise_seed_delta": _first(options.eta_noise_seed_delta, settings.eta_noise_seed_delta),
    }


def _refiner(options: GenerationOptions, settings: Settings, registry: ModelRegistry) -> dict[str, Any]:
    """The refiner (the option, else the server's default; "None" or "" for none; an installed checkpoint,
    refused naming the option and the installed ones) and its switch fraction."""
    # (getattr: settings stand-ins of older callers carry no refiner settings)
    name = options.refiner if options.refiner is not None else getattr(settings, "default_refiner", None)
    if name is None or name.strip() in ("", "None"):
        return {}
    try:
        entry = registry.find_fresh(ModelKind.CHECKPOINT, name)
    except ModelNotFound as exc:
        raise ModelNotFound("refiner", exc.message) from None
    switch_at = _first(options.refiner_switch_at, getattr(settings, "default_refiner_switch_at", None), 0.8)
    return {"refiner": entry.name, "refiner_switch_at": float(switch_at)}


def controlnet_units(
    texts: Sequence[str],
    images: Sequence[Image.Image],
    given: Sequence[ControlNetUnit] = (),
    option: str = "controlnet",
) -> tuple[ControlNetUnit, ...]:
    """ControlNet units from unit texts (`model=NAME,module=canny,…`; none: the `given` ones, e.g. a PNG's)
    and control images: one image for every unit, or one image each, in order; no image: the units read
    img2img's input image."""
    units = [parse_unit(text, option) for text in texts] if texts else list(given)
    if images and not units:
        raise InvalidRequest("control_image", "a control image needs a ControlNet unit (--controlnet)")
    if len(images) > 1 and len(images) != len(units):
        raise InvalidRequest(
            "control_image", f"{len(images)} control images for {len(units)} units: give one, or one per unit"
        )
    if images:
        units = [
            dataclasses.replace(u, image=images[0 if len(images) == 1 else i]) for i, u in enumerate(units)
        ]
    return tuple(units)


def _first(*values):
    """The first value given (not None): the user's option, then the server's default, then Salon's."""
    return next(value for value in values if value is not None)


@dataclass(frozen=True)
class LongJob:
    """A long job to submit (training, animation): its kind and JSON parameters."""

    kind: JobKind
    params: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] | None = None  # the job's meta (an upscale's parent image and relation)


async def submit_and_wait(
    queue: JobQueue,
    request: AnyRequest | LongJob,
    owner: str,
    on_event: Callable[[JobEvent], None] | None = None,
    on_accepted: Callable[[int], None] | None = None,
    run_here: Callable[[], Awaitable[bool]] | None = None,
) -> JobRecord:
    """Submit `request`; run the worker in this process unless another one runs it; return the finished job.
    `run_here`: asked once the job is accepted whether this process should run a worker for it (False: a
    worker of another process will, e.g. a live one on a shared queue); by default it does, unless another
    process holds the data folder's worker lock."""
    if isinstance(request, LongJob):
        job = await queue.submit_task(request.kind, request.params, owner, meta=request.meta)
    else:
        job = await queue.submit(request, owner)
    if on_accepted is not None:
        on_accepted(job.id)
    stop = asyncio.Event()
    runner: asyncio.Task | None = None  # None: another process's worker (the bot, `salon worker`) runs it

    def start_runner() -> asyncio.Task | None:
        with contextlib.suppress(WorkerBusy):  # another process holds the worker lock: its worker runs it
            queue.claim_worker()
            return asyncio.create_task(queue.run(stop=stop))
        return None

    if run_here is None or await run_here():
        runner = start_runner()
    waiter = asyncio.create_task(queue.wait(job.id, on_event))
    try:
        # Left to another process's worker: ask again every lease whether one is still alive (its host may
        # have died, or the bot stopped); when none is, run the worker here instead of waiting forever.
        recheck_s = float(getattr(queue.store, "lease_s", 30.0))
        while runner is None and run_here is not None and not waiter.done():
            await asyncio.wait([waiter], timeout=recheck_s)
            if not waiter.done() and await run_here():
                runner = start_runner()
        if runner is not None:
            # If the worker fails, say so instead of waiting forever for a job nobody runs.
            await asyncio.wait([waiter, runner], return_when=asyncio.FIRST_COMPLETED)
            if runner.done() and not waiter.done():
                waiter.cancel()
                runner.result()  # raises the worker's error
                raise RuntimeError(f"the worker stopped before job {job.id} finished")
        return await waiter
    finally:
        stop.set()
        if runner is not None and not runner.done():
            await runner
