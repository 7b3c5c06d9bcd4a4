"""What every trainer shares: the data set as latents, A1111 learning-rate schedules, the noise-prediction
loss with the model's own scheduler, and a seeded loop with gradient accumulation and clipping that can stop
after any step and resume from the state it saved.

A trainer (train_lora.py, train_embedding.py) decides which parameters learn and how a caption becomes
cross-attention states; this module does the rest the same way for all of them.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from core.errors import InvalidRequest, JobCancelled
from core.files import atomic_write, atomic_write_with
from engine.models.loading import LoadedModel

log = logging.getLogger(__name__)
_RATE_PART = re.compile(r"^\s*([0-9.eE+-]+)\s*(?::\s*(-?\d+)\s*)?$")
LOSS_HISTORY = 200  # recent losses kept for progress lines and the sparkline


def parse_learning_rate(text: str, steps: int) -> list[tuple[float, int]]:
    """A1111's schedule syntax: "0.005:100, 1e-3:1000, 1e-5" = 0.005 until step 100, then 1e-3 until 1000,
    then 1e-5 to the end; a lone number is one rate for every step. Returns (rate, last step) pairs."""
    parts = [part for part in text.split(",")]
    if not text.strip():
        raise InvalidRequest(
            "learning_rate", "empty; give a rate like 1e-4 or a schedule like 0.005:100, 1e-5"
        )
    schedule: list[tuple[float, int]] = []
    for index, part in enumerate(parts):
        match = _RATE_PART.match(part)
        if match is None:
            raise InvalidRequest(
                "learning_rate", f"{part.strip()!r} is not RATE or RATE:STEP (e.g. 0.005:100)"
            )
        try:
            rate = float(match.group(1))
        except ValueError:
            raise InvalidRequest("learning_rate", f"{match.group(1)!r} is not a number") from None
        if not 0 < rate <= 1:
            raise InvalidRequest("learning_rate", f"{rate:g} is not above 0 and at most 1")
        last = index == len(parts) - 1
        until = int(match.group(2)) if match.group(2) is not None else (steps if last else None)
        if until is None:
            raise InvalidRequest(
                "learning_rate", f"{part.strip()!r}: only the last rate may leave out its step"
            )
        until = steps if until == -1 else until
        if schedule and until <= schedule[-1][1]:
            raise InvalidRequest("learning_rate", f"step {until} does not come after step {schedule[-1][1]}")
        schedule.append((rate, until))
    return schedule


def rate_at(schedule: Sequence[tuple[float, int]], step: int) -> float:
    """The learning rate for (1-based) `step`; after the schedule's last step, its last rate."""
    for rate, until in schedule:
        if step <= until:
            return rate
    return schedule[-1][0]


@dataclass(frozen=True)
class Example:
    """One training image as latents (C, h, w), its caption, and a loss weight per latent pixel (or None)."""

    latents: torch.Tensor
    caption: str
    weight: torch.Tensor | None = None


def fit_image(image: Image.Image, size: int, crop: bool = True) -> Image.Image:
    """A1111's preprocessing: centre-crop to a square and resize to `size` (or, without crop, resize the
    longer side to `size`, sides rounded down to multiples of 8)."""
    if crop:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    scale = size / max(image.size)
    width, height = max(8, int(image.width * scale) // 8 * 8), max(8, int(image.height * scale) // 8 * 8)
    return image.resize((width, height), Image.Resampling.LANCZOS)


@torch.no_grad()
def encode_examples(
    model: LoadedModel,
    items: Sequence[tuple[Image.Image, str]],
    size: int,
    crop: bool = True,
    alpha_weight: bool = False,
) -> list[Example]:
    """Images fitted to `size` and encoded by the VAE once (the mean of its latent distribution), with their
    captions; with `alpha_weight`, a PNG's transparency becomes the loss weight (A1111's option)."""
    vae = model.vae
    examples = []
    for image, caption in items:
        fitted = fit_image(image, size, crop)
        rgb = torch.from_numpy(_rgb_array(fitted)).to(model.device, vae.dtype)
        latents = vae.encode(rgb.unsqueeze(0) * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        weight = None
        if alpha_weight and fitted.mode in ("RGBA", "LA"):
            alpha = fitted.getchannel("A").resize(
                (latents.shape[-1], latents.shape[-2]), Image.Resampling.BILINEAR
            )
            weight = (
                torch.tensor(list(alpha.getdata()), dtype=torch.float32).reshape(latents.shape[-2:]) / 255
            )
            weight = weight / weight.mean().clamp(min=1e-6)  # the mean weight stays 1
        examples.append(Example(latents[0].float().cpu(), caption, weight))
    return examples


def cached_examples(
    file: Path, captions: Sequence[str], encode: Callable[[], list[Example]]
) -> list[Example]:
    """Training examples encoded by the VAE once per job, not once per slice: `encode()` the first time, then
    read back from `file` (in the job's work folder) with these captions."""
    from safetensors.torch import load_file, save_file

    if file.is_file():
        tensors = load_file(str(file))
        return [
            Example(tensors[f"{i}.latents"], c, tensors.get(f"{i}.weight")) for i, c in enumerate(captions)
        ]
    examples = encode()
    tensors = {f"{i}.latents": e.latents.contiguous() for i, e in enumerate(examples)}
    tensors |= {f"{i}.weight": e.weight.contiguous() for i, e in enumerate(examples) if e.weight is not None}
    atomic_write_with(file, lambda partial: save_file(tensors, str(partial)))
    return examples


def _rgb_array(image: Image.Image):
    import numpy as np

    return np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0


def unet_dtype(unet: torch.nn.Module) -> torch.dtype:
    """The dtype a UNet computes in: the model's for a frozen copy with adapters, float32 for a fully trained
    copy (Dreambooth trains a float32 copy of a float16 model)."""
    return unet.conv_in.weight.dtype


class NoiseObjective:
    """The diffusion loss: noise the latents at a random timestep with the model's own schedule and compare the
    UNet's prediction (noise, or v for v-prediction models) with the truth; seeded, so a run is repeatable."""

    def __init__(self, model: LoadedModel, seed: int) -> None:
        from diffusers import DDPMScheduler

        self.model = model
        self.scheduler = DDPMScheduler.from_config(model.pipe.scheduler.config)
        self.generator = torch.Generator().manual_seed(seed)

    def loss(
        self,
        unet: torch.nn.Module,
        batch: Sequence[Example],
        states: torch.Tensor,
        per_example: bool = False,
        pooled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The mean squared error of the prediction (or, `per_example`, one mean per example); `pooled` is
        SDXL's pooled text vector per example (its size conditioning is the training size, uncropped)."""
        latents = torch.stack([example.latents for example in batch])
        noise = torch.randn(latents.shape, generator=self.generator)
        steps = self.scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (len(batch),), generator=self.generator)
        error = self._squared_error(unet, latents, noise, timesteps, states, pooled)
        weights = [example.weight for example in batch]
        if any(w is not None for w in weights):
            stacked = torch.stack([w if w is not None else torch.ones(latents.shape[-2:]) for w in weights])
            error = error * stacked.unsqueeze(1).to(error.device)
        return error.flatten(1).mean(1) if per_example else error.mean()

    def _squared_error(
        self,
        unet: torch.nn.Module,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        states: torch.Tensor,
        pooled: torch.Tensor | None,
    ) -> torch.Tensor:
        """(prediction − truth)² per latent value: the latents noised to `timesteps`, the UNet's prediction of
        the noise (or of v, for v-prediction models) against the real one."""
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        device, dtype = self.model.device, unet_dtype(unet)
        predicted = unet(
            noisy.to(device, dtype),
            timesteps.to(device),
            encoder_hidden_states=states.to(device, dtype),
            **self._added(pooled, latents, dtype),
        ).sample.float()
        return (predicted - target.to(device)) ** 2

    def _added(self, pooled: torch.Tensor | None, latents: torch.Tensor, dtype: torch.dtype) -> dict:
        """SDXL's extra conditioning: the pooled text vector and the size ids (original = target size)."""
        if pooled is None:
            return {}
        scale = self.model.vae_scale_factor
        height, width = latents.shape[-2] * scale, latents.shape[-1] * scale
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
        device = self.model.device
        return {
            "added_cond_kwargs": {
                "text_embeds": pooled.to(device, dtype),
                "time_ids": time_ids.expand(latents.shape[0], -1).to(device, dtype),
            }
        }

    @torch.no_grad()
    def evaluate(
        self,
        unet: torch.nn.Module,
        examples: Sequence[Example],
        states: torch.Tensor,
        seed: int = 0,
        pooled: torch.Tensor | None = None,
    ) -> float:
        """The loss at fixed noise levels (10 % … 90 % of the schedule) with fixed noise: a steady measure to
        compare before and after training, unlike the training loss at random timesteps."""
        saved = self.generator.get_state()
        self.generator.manual_seed(seed)
        losses = []
        steps = self.scheduler.config.num_train_timesteps
        latents = torch.stack([example.latents for example in examples])
        for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
            noise = torch.randn(latents.shape, generator=self.generator)
            timesteps = torch.full((len(examples),), int(steps * fraction))
            losses.append(float(self._squared_error(unet, latents, noise, timesteps, states, pooled).mean()))
        self.generator.set_state(saved)
        return sum(losses) / len(losses)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def restore(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


@dataclass
class LoopState:
    """Where a run stands: the next step, recent losses and the data order's RNG (saved between slices)."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    order_seed: int = 0

    def to_json(self) -> dict:
        return {"step": self.step, "losses": self.losses[-LOSS_HISTORY:], "order_seed": self.order_seed}

    @classmethod
    def from_json(cls, data: dict | None, seed: int) -> LoopState:
        if not data:
            return cls(order_seed=seed)
        return cls(int(data["step"]), [float(x) for x in data.get("losses", [])], int(data["order_seed"]))


@dataclass(frozen=True)
class LoopOptions:
    steps: int
    learning_rate: str
    batch_size: int = 1
    gradient_accumulation: int = 1
    clip_grad_mode: str = "disabled"  # "disabled", "value" or "norm" (A1111's options)
    clip_grad_value: float = 0.1


def check_loop_options(options: LoopOptions, max_steps: int = 100_000) -> list[tuple[float, int]]:
    """Checked options (InvalidRequest names the one at fault); returns the parsed learning-rate schedule."""
    if not 1 <= options.steps <= max_steps:
        raise InvalidRequest("steps", f"{options.steps} is not from 1 to {max_steps}")
    if not 1 <= options.batch_size <= 64:
        raise InvalidRequest("batch_size", f"{options.batch_size} is not from 1 to 64")
    if not 1 <= options.gradient_accumulation <= 64:
        raise InvalidRequest("gradient_accumulation", f"{options.gradient_accumulation} is not from 1 to 64")
    if options.clip_grad_mode not in ("disabled", "value", "norm"):
        raise InvalidRequest(
            "clip_grad_mode", f"{options.clip_grad_mode!r} is not one of: disabled, value, norm"
        )
    if options.clip_grad_mode != "disabled" and not options.clip_grad_value > 0:
        raise InvalidRequest("clip_grad_value", f"{options.clip_grad_value} is not above 0")
    return parse_learning_rate(options.learning_rate, options.steps)


StepLoss = Callable[[Sequence[Example]], torch.Tensor]


def run_loop(
    parameters: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    examples: Sequence[Example],
    step_loss: StepLoss,
    options: LoopOptions,
    state: LoopState,
    should_stop: Callable[[], bool],
    cancelled: Callable[[], bool] = lambda: False,
    on_step: Callable[[LoopState], None] | None = None,
) -> LoopState:
    """Optimizer steps from `state.step` until `options.steps` or `should_stop()` (checked after each step).
    Each step averages `gradient_accumulation` batches; raises JobCancelled when `cancelled()`."""
    schedule = parse_learning_rate(options.learning_rate, options.steps)
    order = _batches(examples, options.batch_size, state, skip=state.step * options.gradient_accumulation)
    while state.step < options.steps:
        if cancelled():
            raise JobCancelled()
        for group in optimizer.param_groups:
            group["lr"] = rate_at(schedule, state.step + 1)
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(options.gradient_accumulation):
            loss = step_loss(next(order)) / options.gradient_accumulation
            loss.backward()
            total += float(loss.detach())
        if options.clip_grad_mode == "value":
            torch.nn.utils.clip_grad_value_(parameters, options.clip_grad_value)
        elif options.clip_grad_mode == "norm":
            torch.nn.utils.clip_grad_norm_(parameters, options.clip_grad_value)
        optimizer.step()
        state.step += 1
        state.losses = [*state.losses[-(LOSS_HISTORY - 1) :], total]
        if not math.isfinite(total):
            raise InvalidRequest(
                "learning_rate", f"the loss became {total} at step {state.step}; lower the rate"
            )
        if on_step is not None:
            on_step(state)
        if should_stop():
            break
    return state


def _batches(examples: Sequence[Example], size: int, state: LoopState, skip: int = 0):
    """Shuffled batches, epoch after epoch; the order depends only on the seed, so a resumed run skips the
    batches it already used and goes on exactly as an uninterrupted run would."""
    if not examples:
        raise InvalidRequest("images", "there are no training images")
    rng = random.Random(state.order_seed)
    indexes: list[int] = []
    drawn = 0
    while True:
        if len(indexes) < size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            indexes += fresh
        batch, indexes = indexes[:size], indexes[size:]
        drawn += 1
        if drawn > skip:
            yield [examples[i] for i in batch]


def caption_states(slot, chunker, caption: str, clip_skip: int = 1, grad: bool = False) -> torch.Tensor:
    """Cross-attention states (1, 77, width) of a caption's first 75 tokens, A1111's prompt rules applied."""
    from engine.prompts.conditioning import encode_chunks

    chunks = chunker.chunks(caption)[:1]
    states, _ = encode_chunks(slot, chunks, clip_skip, grad=grad)
    return states


def caption_encoding(
    slots: Sequence, chunker, caption: str, clip_skip: int = 1, grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A caption through every text encoder of the model (SDXL: both, widths concatenated) and the pooled
    vector of the last one that has it (SDXL's second encoder); SD 1.x: one encoder, no pooled vector."""
    from engine.prompts.conditioning import encode_chunks

    chunks = chunker.chunks(caption)[:1]
    states, pooled = [], None
    for slot in slots:
        hidden, slot_pooled = encode_chunks(slot, chunks, clip_skip, grad=grad)
        states.append(hidden)
        pooled = slot_pooled if slot_pooled is not None else pooled
    return torch.cat(states, dim=-1), pooled


SAVE_EVERY_S = 30.0  # a crash loses at most this much training


def train_from_saved(
    model: LoadedModel,
    parameters: dict[str, torch.nn.Parameter],
    loss: Callable[[NoiseObjective, Sequence[Example]], torch.Tensor],
    examples: Sequence[Example],
    options: LoopOptions,
    seed: int,
    workdir: Path,
    should_stop: Callable[[], bool],
    cancelled: Callable[[], bool] = lambda: False,
    on_step: Callable[[LoopState], None] | None = None,
    save_every_s: float = SAVE_EVERY_S,
) -> LoopState:
    """Train `parameters` (AdamW, the schedule's rate at each step) on `loss` from the state saved in `workdir`
    (or from the start) until done or `should_stop()`; save the state at the end and every `save_every_s`
    seconds, so a crash resumes from the last save, not from zero."""
    import time

    objective = NoiseObjective(model, seed)
    optimizer = torch.optim.AdamW(list(parameters.values()), lr=1e-4, weight_decay=0.0)  # lr set per step
    state = LoopState(order_seed=seed)
    saved = load_training_state(workdir)
    if saved is not None:
        tensors, rest, state = saved
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(tensors[name])
        optimizer.load_state_dict(rest["optimizer"])
        objective.restore(rest["rng"])
    if state.step >= options.steps:
        return state
    if state.step:
        log.info("training resumes at step %d of %d", state.step, options.steps)
    last_save = time.monotonic()

    def after_step(current: LoopState) -> None:
        nonlocal last_save
        if time.monotonic() - last_save >= save_every_s:
            save_training_state(workdir, parameters, optimizer, objective, current)
            last_save = time.monotonic()
        if on_step is not None:
            on_step(current)

    state = run_loop(
        list(parameters.values()),
        optimizer,
        examples,
        lambda batch: loss(objective, batch),
        options,
        state,
        should_stop,
        cancelled,
        after_step,
    )
    save_training_state(workdir, parameters, optimizer, objective, state)
    return state


def train_slice(
    trainer_class: Callable,
    model: LoadedModel,
    examples: Sequence[Example],
    options,
    workdir: Path,
    should_stop: Callable[[], bool],
    cancelled: Callable[[], bool] = lambda: False,
    on_step: Callable[[LoopState, Any], None] | None = None,
    save_every_s: float = SAVE_EVERY_S,
):
    """One slice of any trainer: build it on `model` (its `parameters` dict learns through its `loss`), then
    `train_from_saved`; `on_step(state, trainer)` after each step (to save or preview the result so far).
    Returns the loop state and the trainer (to save its result)."""
    trainer = trainer_class(model, options)
    state = train_from_saved(
        model,
        dict(trainer.parameters),
        trainer.loss,
        examples,
        options.loop,
        options.seed,
        workdir,
        should_stop,
        cancelled,
        None if on_step is None else lambda state: on_step(state, trainer),
        save_every_s,
    )
    return state, trainer


@torch.no_grad()
def prompt_states(slot, chunker, prompt: str, negative: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """The states of a preview prompt and of its negative prompt (empty), through a trainer's encoder path."""
    return caption_states(slot, chunker, prompt), caption_states(slot, chunker, negative)


@torch.no_grad()
def prompt_encodings(slots: Sequence, chunker, prompt: str, negative: str = ""):
    """(states, pooled) of a preview prompt and of its negative prompt (empty), through every encoder."""
    return caption_encoding(slots, chunker, prompt), caption_encoding(slots, chunker, negative)


@torch.no_grad()
def render_preview(
    model: LoadedModel,
    unet: torch.nn.Module,
    states: torch.Tensor,
    negative: torch.Tensor,
    seed: int,
    steps: int,
    size: int,
    pooled: tuple[torch.Tensor, torch.Tensor] | None = None,
    guidance: float | None = None,
) -> Image.Image:
    """An image of what a run has learned so far: the model's own pipeline and scheduler with `unet` and the
    given cross-attention states (the trainer's encoder path), seeded on the CPU; the loaded model is untouched.
    `guidance`: the CFG scale (default: the pipeline's 7.5)."""
    pipe = model.pipe
    extra = {} if model.sdxl else {"requires_safety_checker": False}
    preview_pipe = type(pipe)(**{**pipe.components, "unet": unet, **extra})
    preview_pipe.set_progress_bar_config(disable=True)
    dtype = unet_dtype(unet)
    was_training = unet.training
    unet.eval()
    pooled_kwargs = {}
    if pooled is not None:
        pooled_kwargs = {
            "pooled_prompt_embeds": pooled[0].to(model.device, dtype),
            "negative_pooled_prompt_embeds": pooled[1].to(model.device, dtype),
        }
    try:
        latents = preview_pipe(
            prompt_embeds=states.to(model.device, dtype),
            negative_prompt_embeds=negative.to(model.device, dtype),
            **pooled_kwargs,
            **({} if guidance is None else {"guidance_scale": guidance}),
            num_inference_steps=steps,
            width=size,
            height=size,
            generator=torch.Generator().manual_seed(seed),
            output_type="latent",
        ).images
    finally:
        unet.train(was_training)
    vae = model.vae
    decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(decoded.float(), output_type="pil")[0]


def save_training_state(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    objective: NoiseObjective,
    state: LoopState,
) -> None:
    """Everything needed to resume after the last finished step (written atomically, file by file)."""
    from safetensors.torch import save_file

    atomic_write_with(
        folder / "weights.safetensors",
        lambda p: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(p)),
    )
    atomic_write_with(
        folder / "optimizer.pt",
        lambda p: torch.save({"optimizer": optimizer.state_dict(), "rng": objective.state()}, p),
    )
    atomic_write(folder / "loop.json", json.dumps(state.to_json()))


def load_training_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict, LoopState] | None:
    """What `save_training_state` wrote (None when nothing was saved yet); read with weights_only."""
    if not (folder / "loop.json").is_file():
        return None
    from safetensors.torch import load_file

    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    state = LoopState.from_json(json.loads((folder / "loop.json").read_text()), 0)
    return load_file(str(folder / "weights.safetensors")), saved, state
