"""The denoising loop and the small steps every task shares: schedulers, CFG, VAE encode/decode, tiling.

txt2img, img2img, inpaint and the hires pass all call `denoise`; each task module reads top to bottom and
differs only in how it prepares the starting latents and what it does with the result.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from core.errors import JobCancelled
from engine.models.loading import LoadedModel
from engine.prompts.conditioning import Conditioning
from engine.prompts.scheduled_conditioning import PromptPlan
from engine.requests import GenerationRequest, RunControl, StepProgress
from engine.speed.step_cache import StepCache, cached_step
from engine.tasks.guidance import Guidance
from engine.tasks.ksampling import KSchedule, expected_steps, run_k_sampler
from engine.tasks.noise import initial_noise, make_generators
from engine.tasks.preview import latents_to_preview
from engine.tasks.samplers import SamplerSpec, build_scheduler, effective_eta, needs_k_eta, uses_ensd
from engine.tasks.sigma_schedules import ModelSigmas
from engine.tasks.timestep_samplers import CFGPP_SCALE, CfgppDdim


class ResidualSource(Protocol):
    """What adds residuals to the UNet's blocks at a step (ControlNet): its extra UNet keyword arguments."""

    def residuals(
        self,
        sample: torch.Tensor,
        t,
        step: int,
        total: int,
        text: dict,
        uncond_rows: int,
        latent_channels: int,
    ) -> dict[str, object]: ...

    def infotext(self) -> dict[str, str]:
        """Its infotext keys."""
        ...


@dataclass
class Handover:
    """A refiner taking over the denoising (engine.tasks.refiner): its `Prepared` (model and conditioning),
    from the first model call whose timestep t has (999 − t) / 1000 ≥ `switch_at`, as A1111 switches;
    `switched` records that it did (A1111 writes its infotext keys only then)."""

    prep: Prepared
    switch_at: float
    switched: bool = False

    def due(self, timestep: float) -> bool:
        return (999 - round(timestep)) / 1000 >= self.switch_at


@dataclass(frozen=True)
class Prepared:
    """What a task needs after the request has been resolved: the model, the sampler and the conditioning."""

    model: LoadedModel
    params: GenerationRequest
    spec: SamplerSpec
    schedule: str
    conditioning: Conditioning
    step_cache: int = (
        0  # the whole UNet every N steps, outer blocks between (engine.speed.step_cache); < 2: off
    )
    # Prompt editing, alternation or AND: the conditioning of each step (None: `conditioning` for every step).
    plan: PromptPlan | None = None
    # ControlNet units (engine.controlnet.guide.ControlGuide): residuals added to the UNet at each step.
    controlnet: ResidualSource | None = None
    # The hires pass's own sampler, CFG scale or prompt (engine.tasks.hires); None: this one's.
    hires: Prepared | None = None
    # A model upscaler for the hires pass (engine.upscaling.hires): (decoded image, size) → upscaled image.
    pixel_upscaler: Callable[[Image.Image, tuple[int, int]], Image.Image] | None = None
    # A refiner finishing this pass (engine.tasks.refiner); None: this model denoises to the end.
    refiner: Handover | None = field(default=None, compare=False)


@dataclass(frozen=True)
class KeepOriginal:
    """Inpainting with an ordinary model: after each step, put back the (re-noised) original where keep = 1."""

    init_latents: torch.Tensor
    noise: torch.Tensor
    keep: torch.Tensor  # (1, 1, h, w), 1 = keep the original, 0 = repaint


def latent_shape(model: LoadedModel, width: int, height: int) -> tuple[int, int, int]:
    f = model.vae_scale_factor
    return model.latent_channels, height // f, width // f


def seeded_noise(
    prep: Prepared, seeds: Sequence[int], variation_seeds: Sequence[int] | None, width: int, height: int
) -> tuple[list[torch.Generator], torch.Tensor]:
    """Per-image generators and each image's starting noise at width×height, variation seeds mixed in, made
    at the "resize seed from" size when one is given; with ENSD (for the samplers A1111 applies it to), the
    generators of the sampler's step noise are then seeded with seed + ENSD."""
    p = prep.params
    generators = make_generators(seeds)
    shape = latent_shape(prep.model, width, height)
    source = None
    if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0:
        f = prep.model.vae_scale_factor
        source = (shape[0], p.seed_resize_from_h // f, p.seed_resize_from_w // f)
    noise = initial_noise(shape, generators, variation_seeds, p.variation_strength, source)
    if uses_ensd(prep.spec.name, p.eta, p.eta_noise_seed_delta):
        generators = make_generators([seed + p.eta_noise_seed_delta for seed in seeds])
    return generators, noise.to(prep.model.device)


def new_scheduler(prep: Prepared, steps: int, seeds: Sequence[int]):
    """A fresh scheduler for one loop, with its timesteps set (schedulers keep per-run state); a `KSchedule`
    where the sampler runs as a k-diffusion loop with this schedule (or an eta its diffusers class lacks);
    DDIM CFG++'s own (engine.tasks.timestep_samplers)."""
    base = prep.model.pipe.scheduler
    if prep.spec.timestep_function:
        scheduler = CfgppDdim(base.alphas_cumprod, base.config.get("prediction_type", "epsilon"))
        scheduler.set_timesteps(steps)
        return scheduler
    if prep.spec.runs_k_loop(prep.schedule) or needs_k_eta(prep.spec, prep.params.eta):
        sigmas = ModelSigmas.of_scheduler(prep.model.pipe.scheduler)
        return KSchedule(prep.spec.k_function, prep.schedule, steps, sigmas, prep.model.sdxl, seeds)
    scheduler = build_scheduler(prep.spec, prep.schedule, prep.model.pipe.scheduler.config, list(seeds))
    scheduler.set_timesteps(steps, device=prep.model.device)
    return scheduler


def strength_timesteps(scheduler, steps: int, strength: float) -> torch.Tensor:
    """The tail of the schedule that img2img runs for a denoising strength (as many steps as steps × strength)."""
    start = steps - min(int(steps * strength), steps)
    begin = start * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    return scheduler.timesteps[begin:]


def denoise(
    prep: Prepared,
    latents: torch.Tensor,
    scheduler,
    timesteps: torch.Tensor,
    generators: Sequence[torch.Generator],
    control: RunControl,
    *,
    phase: str,
    first_index: int,
    size: tuple[int, int],
    keep: KeepOriginal | None = None,
    extra_channels: torch.Tensor | None = None,
    prompt_steps: tuple[int, int | None] | None = None,
) -> torch.Tensor:
    """Run the sampler over `timesteps` with classifier-free guidance; returns the final latents (float32).

    `prompt_steps`: the (steps, hires steps) a prompt's schedule is counted in (A1111 counts a pass's full
    schedule, and the hires pass after the first one's); by default the length of `timesteps`."""
    model = prep.model
    steps = prompt_steps or (len(timesteps), None)
    cfgpp = getattr(scheduler, "cfgpp", False)  # DDIM CFG++: the CFG scale ÷ 12.5, the uncond prediction kept
    cfg = prep.params.cfg_scale * (CFGPP_SCALE if cfgpp else 1.0)
    guidance = Guidance(
        model, prep.conditioning, prep.plan, cfg, latents.shape[0], size, steps, always_guided=cfgpp
    )
    groups = guidance.groups
    if isinstance(scheduler, KSchedule):
        run = _KRun(prep, guidance, scheduler, control, keep, extra_channels)
        return run(latents, timesteps, generators, phase, first_index)
    accepted = inspect.signature(scheduler.step).parameters
    step_kwargs: dict = {"generator": list(generators)} if "generator" in accepted else {}
    if prep.params.eta is not None and "eta" in accepted:  # DDIM's eta (validation allows it nowhere else)
        step_kwargs["eta"] = prep.params.eta
    total = len(timesteps)
    cache = StepCache(prep.step_cache) if prep.step_cache > 1 else None
    for i, t in enumerate(timesteps):
        if control.cancelled():
            raise JobCancelled(f"cancelled at step {i} of {total} ({phase})")
        if prep.refiner is not None and prep.refiner.due(float(t)):
            prep, guidance = handed_over(prep, guidance)
            model, cache = prep.model, StepCache(prep.step_cache) if prep.step_cache > 1 else None
        model_in = torch.cat([latents] * groups) if groups > 1 else latents
        model_in = scheduler.scale_model_input(model_in, t)
        if extra_channels is not None:
            model_in = torch.cat([model_in, extra_channels.repeat(groups, 1, 1, 1)], dim=1)
        sample, text = model_in.to(model.dtype), guidance.at(i)
        text = {**text, **_control_residuals(prep, guidance, sample, t, i, total)}
        prediction = unet_prediction(model, sample, t, text, cache)
        eps = guidance.combine(prediction)
        if cfgpp:
            step_kwargs["uncond"] = prediction.chunk(groups)[0]
        with warnings.catch_warnings():
            # torchsde's Brownian tree warns about float rounding of its interval ends (harmless, every step).
            warnings.filterwarnings("ignore", message="Should have ta>=t0", category=UserWarning)
            latents = scheduler.step(eps, t, latents, **step_kwargs).prev_sample
        if keep is not None:
            latents = _put_back_original(scheduler, keep, latents, timesteps, i)
        _report(control, prep, phase, i, total, first_index, latents)
    return latents


def handed_over(prep: Prepared, guidance: Guidance) -> tuple[Prepared, Guidance]:
    """The refiner's Prepared and guidance, taking over from `prep` (marked as switched)."""
    assert prep.refiner is not None
    prep.refiner.switched = True
    refiner = prep.refiner.prep
    g = guidance
    return refiner, Guidance(
        refiner.model,
        refiner.conditioning,
        refiner.plan,
        g.cfg,
        g.batch,
        g.size,
        g.prompt_steps,
        always_guided=g.always_guided,
    )


class _KRun:
    """One k-diffusion loop: the UNet with classifier-free guidance as the denoiser `model(x, sigma)`."""

    def __init__(self, prep, guidance, schedule: KSchedule, control, keep, extra_channels):
        self.prep, self.guidance, self.schedule, self.control = prep, guidance, schedule, control
        self.keep, self.extra_channels = keep, extra_channels
        self.v_prediction = prep.model.pipe.scheduler.config.get("prediction_type") == "v_prediction"
        self.cache = StepCache(prep.step_cache) if prep.step_cache > 1 else None
        self.calls, self.total = 0, 1

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.control.cancelled():
            raise JobCancelled(f"cancelled at model call {self.calls}")
        model, groups = self.prep.model, self.guidance.groups
        s = float(sigma.reshape(-1)[0])
        model_in = torch.cat([x] * groups) if groups > 1 else x
        model_in = model_in / (s**2 + 1) ** 0.5
        if self.extra_channels is not None:
            model_in = torch.cat([model_in, self.extra_channels.repeat(groups, 1, 1, 1)], dim=1)
        t = self.schedule.model.sigma_to_t(torch.tensor(s)).to(model.device)
        if self.prep.refiner is not None and self.prep.refiner.due(self._timestep(s)):
            self.prep, self.guidance = handed_over(self.prep, self.guidance)
            self.cache = StepCache(self.prep.step_cache) if self.prep.step_cache > 1 else None
            model = self.prep.model
            self.v_prediction = model.pipe.scheduler.config.get("prediction_type") == "v_prediction"
        # A1111 counts prompt-schedule steps in model calls (its CFGDenoiser.step), as the loop above does.
        step = min(self.calls, self.total - 1)
        sample, text = model_in.to(model.dtype), self.guidance.at(self.calls)
        text = {**text, **_control_residuals(self.prep, self.guidance, sample, t, step, self.total)}
        out = self.guidance.combine(unet_prediction(model, sample, t, text, self.cache))
        self.calls += 1
        if self.v_prediction:
            denoised = x / (s**2 + 1) - out * s / (s**2 + 1) ** 0.5
        else:
            denoised = x - out * s
        if self.keep is not None:
            denoised = self.keep.init_latents * self.keep.keep + denoised * (1.0 - self.keep.keep)
        return denoised

    def _timestep(self, sigma: float) -> int:
        """The training step nearest to a noise level (A1111's refiner switch reads it so)."""
        return int(torch.argmin((self.schedule.model.sigmas - sigma).abs()))

    def __call__(self, latents, timesteps, generators, phase: str, first_index: int) -> torch.Tensor:
        sigmas = self.schedule.run_sigmas(timesteps)
        total = self.total = max(1, expected_steps(self.schedule, sigmas))

        def callback(info: dict) -> None:
            _report(
                self.control, self.prep, phase, min(int(info["i"]), total - 1), total, first_index, info["x"]
            )

        eta = effective_eta(self.prep.spec.name, self.prep.params.eta)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
            latents = run_k_sampler(
                self.schedule, self.denoised, latents.float(), sigmas, generators, callback, eta
            )
        if self.keep is not None:
            latents = self.keep.init_latents * self.keep.keep + latents * (1.0 - self.keep.keep)
        return latents


def unet_prediction(
    model: LoadedModel, sample: torch.Tensor, t, kwargs: dict, cache: StepCache | None = None
) -> torch.Tensor:
    """The UNet's noise prediction in float32: through the fast path when the model has one, else eagerly."""
    states, added = kwargs["encoder_hidden_states"], kwargs.get("added_cond_kwargs")
    if model.token_grid is not None:
        model.token_grid.size = (int(sample.shape[-2]), int(sample.shape[-1]))
    if "mid_block_additional_residual" in kwargs:  # ControlNet: the eager UNet takes its residuals
        cache = None
    elif model.fast is not None:
        return model.fast.unet(sample, t, states, added, cache)
    if cache is not None:
        return cached_step(model.unet, sample, t, states, added, cache).float()
    with torch.no_grad():
        return model.unet(sample, t, **kwargs).sample.float()


def _control_residuals(
    prep: Prepared, guidance: Guidance, sample: torch.Tensor, t, i: int, total: int
) -> dict:
    """The ControlNet hook: the residuals of the request's units at step i (none without units)."""
    if prep.controlnet is None:
        return {}
    uncond_rows = guidance.batch if guidance.guided else 0
    return prep.controlnet.residuals(
        sample, t, i, total, guidance.at(i), uncond_rows, prep.model.latent_channels
    )


def _put_back_original(
    scheduler, keep: KeepOriginal, latents: torch.Tensor, timesteps, i: int
) -> torch.Tensor:
    if i + 1 < len(timesteps):
        original = scheduler.add_noise(keep.init_latents, keep.noise, timesteps[i + 1 : i + 2])
    else:
        original = keep.init_latents
    return original * keep.keep + latents * (1.0 - keep.keep)


def _report(control: RunControl, prep: Prepared, phase: str, i: int, total: int, first: int, latents) -> None:
    if control.on_step is None:
        return
    steps = prep.params.steps
    # Second-order samplers evaluate twice per step: report in the user's steps, not UNet calls.
    shown = min(total, i + 1) if total <= steps else max(1, math.ceil((i + 1) * steps / total))
    shown_total = min(total, steps) if total <= steps else steps
    snapshot = latents.detach().clone()
    sdxl = prep.model.sdxl

    def preview(index: int = 0) -> Image.Image:
        return latents_to_preview(snapshot[index : index + 1], sdxl)

    control.on_step(StepProgress(phase, shown, shown_total, first, preview=preview))


def images_to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB images to a (B, 3, H, W) float tensor in [-1, 1]."""
    arrays = [np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def tensor_to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """A (B, 3, H, W) tensor in [-1, 1] to RGB images."""
    arrays = ((pixels.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy(), "RGB") for a in arrays]


def encode_images(model: LoadedModel, images: Sequence[Image.Image]) -> torch.Tensor:
    """Images to scaled latents (the posterior mean: deterministic, no extra noise)."""
    vae = model.vae
    pixels = images_to_tensor(images).to(model.device, next(vae.parameters()).dtype)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean
    return latents.float() * vae.config.scaling_factor


def decode_latents(model: LoadedModel, latents: torch.Tensor) -> list[Image.Image]:
    """Scaled latents to RGB images."""
    vae = model.vae
    scaled = (latents / vae.config.scaling_factor).to(model.device, next(vae.parameters()).dtype)
    if model.fast is not None:
        return tensor_to_images(model.fast.decode(scaled))
    with torch.no_grad():
        pixels = vae.decode(scaled).sample
    return tensor_to_images(pixels)


@contextmanager
def tiling(model: LoadedModel, enabled: bool) -> Iterator[None]:
    """Seamless tiling: every convolution of the UNet and VAE pads circularly while active."""
    if not enabled:
        yield
        return
    convs = [m for part in (model.unet, model.vae) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    saved = [m.padding_mode for m in convs]
    for conv in convs:
        conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv, mode in zip(convs, saved, strict=True):
            conv.padding_mode = mode
