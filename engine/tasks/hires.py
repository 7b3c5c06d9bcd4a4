"""The hires pass's own settings (A1111's hires prompt, negative prompt, sampler, schedule and CFG scale).

`hires_params` is the request of the second pass; `hires_prepared` the `Prepared` it runs with, made by the
runner once per request (its conditioning encoded only when the hires prompts differ from the first pass's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from engine.prompts.conditioning import Conditioning
from engine.prompts.scheduled_conditioning import PromptPlan
from engine.requests import GenerationRequest
from engine.tasks.samplers import SamplerTable
from engine.tasks.sampling import Prepared


def hires_params(p: GenerationRequest) -> GenerationRequest:
    """The generation parameters of the hires pass: the hires fix's own where it gives them, else the first
    pass's (an empty prompt, sampler or schedule and a CFG scale of None are "the same")."""
    hires = p.hires
    if hires is None:
        return p
    return dataclasses.replace(
        p,
        prompt=hires.prompt or p.prompt,
        negative_prompt=hires.negative_prompt or p.negative_prompt,
        sampler=hires.sampler or p.sampler,
        schedule=hires.schedule or p.schedule,
        cfg_scale=p.cfg_scale if hires.cfg_scale is None else hires.cfg_scale,
    )


def hires_prepared(
    prep: Prepared,
    samplers: SamplerTable,
    conditioning_of: Callable[[GenerationRequest], Conditioning],
    plan_of: Callable[[GenerationRequest], PromptPlan | None],
) -> Prepared:
    """`prep` with the Prepared of its hires pass attached (none when the pass changes nothing)."""
    p = prep.params
    second = hires_params(p)
    if second == p:
        return prep
    spec, schedule = samplers.resolve(second.sampler, second.schedule)
    conditioning, plan = prep.conditioning, prep.plan
    if (second.prompt, second.negative_prompt) != (p.prompt, p.negative_prompt):
        conditioning, plan = conditioning_of(second), plan_of(second)
    hires = dataclasses.replace(
        prep, params=second, spec=spec, schedule=schedule, conditioning=conditioning, plan=plan
    )
    return dataclasses.replace(prep, hires=hires)
