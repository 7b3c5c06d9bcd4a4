"""txt2img and img2img on SD 3.5 and Flux through diffusers' own pipelines, with Salon's seeds and LoRAs.

The engine (engine/runner.py) hands a flow-matching model's requests here. Each image's starting noise is
Salon's (engine.tasks.noise: the image's own CPU generator, variation seeds mixed in), passed to the pipeline as
`latents=` (Flux's in its packed form), so a seed gives the same image on every path of a device. img2img
encodes the input itself and gives the pipeline those latents with per-image CPU generators of the seeds.
The sampler is the flow-matching Euler of the model's scheduler (its shift, and Flux's resolution-dependent
shift, as the release configures it; a request's `shift` replaces them for its job), Flux dev's distilled
guidance the request's `distilled_cfg_scale` or 3.5. Requests batched together (one batch key) run in shared
pipeline calls, each image with its own prompt and noise. Steps report progress and cancel through
`callback_on_step_end`.

Prompt emphasis `(word:1.2)` is applied as Forge applies it, to the per-token states of T5 (and of SD 3.5's two
CLIPs) — engine/prompts/flow_emphasis.py; a prompt without weights reaches the pipeline as its plain text.
BREAK is removed (these pipelines have no 75-token chunks) and the result says so in a note.
`<lora:name:weight>` loads through diffusers' `load_lora_weights` (kohya, ai-toolkit, BFL and peft formats it
converts), several at once with their weights, and is unloaded after the job.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from config import parse_size
from core.errors import InvalidRequest, JobCancelled
from engine.infotext import format_infotext
from engine.infotext_values import format_number, hashes_value, salon_version
from engine.models.flow_files import FLUX, FlowKind, entry_kind
from engine.models.model_files import load_safetensors
from engine.prompts.flow_emphasis import (
    Fragments,
    flux_embeddings,
    is_weighted,
    prompt_fragments,
    sd3_embeddings,
)
from engine.prompts.prompt_syntax import extract_extra_networks
from engine.requests import (
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    ResizeMode,
    RunControl,
    StepProgress,
)
from engine.speed.flow_compile import FlowFastPath
from engine.tasks.batching import BatchControl
from engine.tasks.flow_rules import FLOW_SAMPLER, FLOW_SCHEDULE, check_flow_request, flow_defaults
from engine.tasks.noise import initial_noise, make_generators
from engine.tasks.resize import resize_image

BREAK_NOTE = "BREAK is not applied on SD 3.5 / Flux models (they have no 75-token chunks): it was removed"


def flow_fast_path(model, speed) -> FlowFastPath:
    """Speed mode "max" for a loaded SD 3.5 / Flux model: its transformer compiled for the speed sizes (default
    the family's native square) × batch buckets, warmed with the family's default guidance."""
    defaults = flow_defaults(entry_kind(model.entry))
    guidance = defaults.cfg_scale if model.family != FLUX else defaults.distilled_cfg_scale or 0.0
    sizes = sorted({parse_size(s) for s in speed.sizes} or {(defaults.size, defaults.size)})
    return FlowFastPath(model.pipe, speed, sizes, {"guidance_scale": guidance})


def run_flow(engine, model, requests: Sequence[GenerationRequest], controls, extra, init_image):
    """Every image of `requests` (one batch key) on a loaded SD 3.5 / Flux model; `init_image` for img2img,
    whose strength is the `Denoising strength` the engine put in `extra`. The images of all the requests run
    together, as many per pipeline call as the engine's batch limit (or a request's batch size) allows, each
    with its own prompt, seed and starting noise: a seed gives the same image batched or alone."""
    started = time.perf_counter()
    kind = entry_kind(model.entry)
    assert kind is not None, "run_flow is only called for flow-matching models"
    strength = float(extra["Denoising strength"]) if init_image is not None else None
    for request in requests:
        check_flow_request(
            request, kind
        )  # the queue's check again, for callers that bypass it (tests, tools)
    first = requests[0]
    texts = [(prompt_fragments(r.prompt), prompt_fragments(r.negative_prompt)) for r in requests]
    loras = engine._lora_uses(extract_extra_networks(first.prompt)[1])
    images: list[list[GeneratedImage]] = [[] for _ in requests]
    lora_eager = "lora" if model.fast is not None and any(u.weight != 0 for u in loras) else None
    eager = model.fast.eager_while(lora_eager) if model.fast is not None else contextlib.nullcontext()
    with eager, _loras_active(model.pipe, loras), _shifted(model.pipe, first.shift):
        lora_info = hashes_value([(u.entry.name, u.short_hash) for u in loras if u.weight != 0])
        infos = [_info(model, kind, r, extra, lora_info) for r in requests]
        slots = _slots(requests)
        size = max(engine.settings.limits.max_batch_size, *(r.batch_size for r in requests))
        for begin in range(0, len(slots), size):
            chunk = slots[begin : begin + size]
            pixels = _run_batch(
                model,
                kind,
                first,
                [texts[s.request][0][:2] for s in chunk],
                [texts[s.request][1][:2] for s in chunk],
                [s.seed for s in chunk],
                [s.variation for s in chunk] if first.variation_strength else None,
                _BatchControl(chunk, controls),
                init_image,
                strength,
            )
            for slot, image in zip(chunk, pixels, strict=True):
                request = requests[slot.request]
                text = _image_infotext(request, infos[slot.request], slot)
                images[slot.request].append(
                    GeneratedImage(image, slot.seed, slot.variation, text, slot.index)
                )
    elapsed = time.perf_counter() - started
    return [
        GenerationResult(
            tuple(found),
            model.name,
            model.hash,
            elapsed,
            (BREAK_NOTE,) if text[0][2] or text[1][2] else (),
        )
        for found, text in zip(images, texts, strict=True)
    ]


@dataclass(frozen=True)
class _Slot:
    """One image to make: its request (position in the batch), its index there, its seeds."""

    request: int
    index: int
    seed: int
    variation: int | None


def _slots(requests: Sequence[GenerationRequest]) -> list[_Slot]:
    return [
        _Slot(number, i, p.seed + i, p.variation_seed + i if p.variation_strength else None)
        for number, p in enumerate(requests)
        for i in range(p.batch_size * p.batch_count)
    ]


def _info(model, kind: FlowKind, p: GenerationRequest, extra, lora_info) -> dict[str, str | None]:
    """A request's infotext parameters, with Forge's keys for these families; each image adds its seeds."""
    distilled = distilled_guidance(kind, p)
    return {
        "Steps": str(p.steps),
        "Sampler": FLOW_SAMPLER,
        "Schedule type": FLOW_SCHEDULE,
        "CFG scale": format_number(p.cfg_scale),
        "Distilled CFG Scale": None if distilled is None else format_number(distilled),
        "Shift": None if p.shift is None else format_number(p.shift),
        "Size": f"{p.width}x{p.height}",
        "Model hash": model.hash,
        "Model": model.name,
        "RNG": "CPU",
        **extra,
        "Lora hashes": lora_info,
        "Version": salon_version(),
    }


def _image_infotext(p: GenerationRequest, info: dict[str, str | None], slot: _Slot) -> str:
    params = {**info, "Seed": str(slot.seed)}
    if slot.variation is not None:
        params["Variation seed"] = str(slot.variation)
        params["Variation seed strength"] = format_number(p.variation_strength)
    return format_infotext(p.prompt, p.negative_prompt, params)


class _BatchControl(BatchControl):
    """A shared pipeline call's control: its previews hold one image per position (a 1-argument callable)."""

    def preview(self, preview, position: int):
        return functools.partial(_preview_from, preview, position)


def _preview_from(preview, start: int, index: int = 0) -> Image.Image:
    """A request's image `index` in a shared batch's preview, its first image being at `start`."""
    return preview(start + index)


def _run_batch(model, kind, p, prompts, negatives, seeds, variation, control, init_image, strength):
    """One pipeline call: an image per seed, each with its own prompt and negative prompt (plain text and
    weighted fragments); `p` holds the shared settings."""
    pipe = model.pipe
    generators = make_generators(seeds)
    kwargs = _guidance(kind, p, [plain for plain, _ in negatives])
    if init_image is None:
        kwargs["latents"] = _latents(model, kind, p, generators, variation)
        run = pipe
    else:
        if strength == 0:  # nothing changes: the resized input, as Salon's other img2img path returns it
            return [_fitted(init_image, p) for _ in seeds]
        from engine.models.flow_loading import img2img_pipeline

        run = img2img_pipeline(pipe, kind.family)
        run.set_progress_bar_config(disable=True)
        kwargs.update(
            image=_encode(model, init_image, p, len(seeds)), strength=strength, generator=generators
        )
    total = p.steps if strength is None else p.steps - int(max(p.steps - p.steps * strength, 0))
    phase = "txt2img" if init_image is None else "img2img"
    callback = _StepCallback(model, kind, p, control, phase, total)
    with torch.inference_mode():
        kwargs.update(_prompts(pipe, kind, prompts, negatives, kwargs.pop("negative_prompt", None)))
        result = run(
            num_inference_steps=p.steps,
            height=p.height,
            width=p.width,
            callback_on_step_end=callback,
            output_type="pil",
            **kwargs,
        )
    return list(result.images)


def _prompts(pipe, kind: FlowKind, prompts, negatives, negative_texts: list[str] | None) -> dict[str, object]:
    """The call's prompt arguments: the plain texts (and `negative_texts`, the negative prompts as the call
    uses them; None: it uses none), or, when one of them has weights, embeddings with the weights applied
    (engine/prompts/flow_emphasis.py)."""
    uses_negative = negative_texts is not None
    weighted: list[tuple[str, Fragments]] = [*prompts, *(negatives if uses_negative else ())]
    if not any(is_weighted(fragments) for _, fragments in weighted):
        plain_args: dict[str, object] = {"prompt": [plain for plain, _ in prompts]}
        if uses_negative:
            plain_args["negative_prompt"] = negative_texts
        return plain_args
    plain, fragments = [t for t, _ in prompts], [f for _, f in prompts]
    negative_texts = negative_texts or []
    if kind.family != FLUX:
        return sd3_embeddings(pipe, plain, fragments, negative_texts, [f for _, f in negatives])
    embeds, pooled = flux_embeddings(pipe, plain, fragments)
    found: dict[str, object] = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    if uses_negative:
        negative, negative_pooled = flux_embeddings(pipe, negative_texts, [f for _, f in negatives])
        found.update(negative_prompt_embeds=negative, negative_pooled_prompt_embeds=negative_pooled)
    return found


def _guidance(kind: FlowKind, p: GenerationRequest, negatives: Sequence[str]) -> dict[str, object]:
    """SD3: CFG with the negative prompt. Flux: the distilled guidance (dev) as `guidance_scale`, and true
    CFG with the negative prompt only when the CFG scale is above 1 (Forge's rule)."""
    if kind.family != FLUX:
        return {"guidance_scale": p.cfg_scale, "negative_prompt": list(negatives)}
    distilled = distilled_guidance(kind, p)
    kwargs: dict[str, object] = {"guidance_scale": distilled if distilled is not None else 0.0}
    if p.cfg_scale > 1:
        kwargs.update(true_cfg_scale=p.cfg_scale, negative_prompt=[n or " " for n in negatives])
    return kwargs


def distilled_guidance(kind: FlowKind, p: GenerationRequest) -> float | None:
    """Flux dev's distilled guidance: the request's, else the variant's default; None: the model has none."""
    default = flow_defaults(kind).distilled_cfg_scale
    if default is None:
        return None
    return default if p.distilled_cfg_scale is None else p.distilled_cfg_scale


@contextlib.contextmanager
def _shifted(pipe, shift: float | None) -> Iterator[None]:
    """The request's schedule shift for one job: the model's flow-matching scheduler again with that fixed
    shift (Flux's resolution-dependent shift off), then the model's own scheduler back."""
    if shift is None:
        yield
        return
    own = pipe.scheduler
    pipe.scheduler = type(own).from_config(own.config, shift=shift, use_dynamic_shifting=False)
    try:
        yield
    finally:
        pipe.scheduler = own


def _latent_size(model, p: GenerationRequest) -> tuple[int, int]:
    factor = model.pipe.vae_scale_factor
    return p.height // factor, p.width // factor


def _latents(model, kind: FlowKind, p, generators, variation) -> torch.Tensor:
    """Salon's noise for each image (its own seed's generator), in the pipeline's layout."""
    h, w = _latent_size(model, p)
    channels = model.latent_channels
    if kind.family == FLUX:  # Flux packs 2×2 patches: the latent sides are even
        h, w = 2 * (h // 2), 2 * (w // 2)
    noise = initial_noise((channels, h, w), generators, variation, p.variation_strength)
    if kind.family == FLUX:
        noise = model.pipe._pack_latents(noise, noise.shape[0], channels, h, w)
    return noise.to(model.device, model.dtype)


def _encode(model, image: Image.Image, p: GenerationRequest, count: int) -> torch.Tensor:
    """The input image fitted to the size, through the VAE (its mean), shifted and scaled as the model's."""
    vae = model.vae
    pixels = model.pipe.image_processor.preprocess(_fitted(image, p))
    pixels = pixels.to(model.device, vae.dtype)
    with torch.inference_mode():
        latents = vae.encode(pixels).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", 0.0) or 0.0
    latents = (latents - shift) * vae.config.scaling_factor
    return latents.repeat(count, 1, 1, 1).to(model.dtype)


def _fitted(image: Image.Image, p: GenerationRequest) -> Image.Image:
    """The input at the request's size (A1111's "Just resize", the one mode these families take)."""
    return resize_image(ResizeMode.JUST_RESIZE, image.convert("RGB"), p.width, p.height)


class _StepCallback:
    """diffusers' `callback_on_step_end`: cancel between steps, report each step with a cheap preview."""

    def __init__(self, model, kind, p, control: RunControl, phase: str, total: int) -> None:
        self.model, self.kind, self.p, self.control = model, kind, p, control
        self.phase, self.total = phase, total
        self.step = 0

    def __call__(self, pipe, i, t, tensors):
        if self.control.cancelled():
            raise JobCancelled(f"cancelled at step {self.step} of {self.total} ({self.phase})")
        self.step += 1
        if self.control.on_step is not None:
            latents = tensors["latents"].detach()
            preview = lambda position=0: self._preview(latents, position)  # noqa: E731 - rendered on demand
            self.control.on_step(StepProgress(self.phase, self.step, self.total, 0, preview))
        return {}

    def _preview(self, latents: torch.Tensor, position: int) -> Image.Image:
        """The first three latent channels, each stretched to its range: a rough look, no VAE decode."""
        if self.kind.family == FLUX:
            factor = self.model.pipe.vae_scale_factor
            latents = self.model.pipe._unpack_latents(latents, self.p.height, self.p.width, factor)
        rgb = latents[position, :3].float().cpu()
        low = rgb.amin(dim=(1, 2), keepdim=True)
        high = rgb.amax(dim=(1, 2), keepdim=True)
        pixels = ((rgb - low) / (high - low).clamp_min(1e-6) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


@contextlib.contextmanager
def _loras_active(pipe, uses) -> Iterator[None]:
    """The prompt's LoRAs loaded as diffusers adapters with their weights for one job, then unloaded."""
    active = [u for u in uses if u.weight != 0]
    if not active:
        yield
        return
    names = []
    try:
        for number, use in enumerate(active):
            name = f"salon_{number}"
            try:
                pipe.load_lora_weights(load_safetensors(use.entry.path), adapter_name=name)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise InvalidRequest(
                    "prompt", f"<lora:{use.entry.name}> does not fit this model ({type(exc).__name__}: {exc})"
                ) from exc
            names.append(name)
        pipe.set_adapters(names, [u.weight for u in active])
        yield
    finally:
        if names:
            pipe.unload_lora_weights()
