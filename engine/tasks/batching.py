"""Which txt2img requests can share one denoising batch: those that differ only in prompt, seed and count.

Pure Python (no torch), so the queue can group waiting jobs before any of them reaches the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

from engine.prompts.prompt_schedule import needs_plan
from engine.prompts.prompt_syntax import extract_extra_networks
from engine.requests import GenerationRequest, RunControl, StepProgress


class BatchMember(Protocol):
    request: int  # which request of the batch an image belongs to
    index: int  # its index among that request's images


def batch_key(request: GenerationRequest) -> Hashable:
    """Equal keys → the requests run together: same model, size, sampler, steps, CFG, options and LoRAs.

    Prompts, negative prompts, seeds, variation seeds and image counts may differ, except prompts with editing,
    alternation or AND, which batch only with the same prompt and negative prompt. `model` should already be
    resolved to a name (None means the engine's default, which is the same for every request).
    """
    prompt, networks = extract_extra_networks(request.prompt)
    loras = tuple(sorted((n.kind, n.name, n.args) for n in networks))
    # Conditioning that changes by step (editing, alternation, AND) is one per batch: only equal prompts share.
    scheduled = (prompt, request.negative_prompt) if needs_plan(prompt, request.negative_prompt) else None
    return (
        request.model,
        request.width,
        request.height,
        request.sampler,
        request.schedule,
        request.steps,
        request.cfg_scale,
        request.clip_skip,
        request.tiling,
        request.hires,
        request.variation_strength,
        request.vae,
        (request.seed_resize_from_w, request.seed_resize_from_h),
        request.eta,
        request.eta_noise_seed_delta,
        (request.distilled_cfg_scale, request.shift),  # SD 3.5 / Flux: the guidance and the schedule's shift
        loras,
        scheduled,
        # A refiner: its handover is one per request, so such a request batches with no other
        (request.refiner, request.refiner_switch_at, id(request)) if request.refiner else (),
        # ControlNet units; their control images are not compared: a request with units batches with no other
        (request.controlnet, id(request)) if request.controlnet else (),
    )


class BatchControl(RunControl):
    """The control of a batch: steps are reported to each request in it; it stops once all are cancelled."""

    def __init__(self, chunk: Sequence[BatchMember], controls: Sequence[RunControl]) -> None:
        super().__init__()
        # Each request's first image in the batch: its position there and its index in the request.
        self.members: dict[int, tuple[int, int]] = {}
        for position, slot in enumerate(chunk):
            self.members.setdefault(slot.request, (position, slot.index))
        self.controls = controls
        self.on_step = self._fan_out

    def cancelled(self) -> bool:
        return all(self.controls[r].cancelled() for r in self.members)

    def preview(self, preview: Callable, position: int) -> Callable:
        """A request's preview, its first image being at `position` in the batch's preview."""
        return functools.partial(preview, position)

    def _fan_out(self, event: StepProgress) -> None:
        for request, (position, index) in self.members.items():
            callback = self.controls[request].on_step
            if callback is not None and event.preview is not None:
                preview = self.preview(event.preview, position)
                callback(StepProgress(event.phase, event.step, event.total, index, preview))
