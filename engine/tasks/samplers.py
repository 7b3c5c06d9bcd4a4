"""A1111 sampler names and Schedule types mapped onto diffusers schedulers (SPEC §9).

The tables are plain data so that front ends can validate and autocomplete without importing torch;
`build_scheduler` imports diffusers only when a scheduler is actually made. The built-in samplers are a
constant; a process's samplers, its extensions' included, are a `SamplerTable` value that the composition
root builds once and hands down (nothing changes a module global).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from core.errors import InvalidRequest
from engine.requests import AUTOMATIC

UNIFORM = "Uniform"

# Schedule type → the scheduler arguments that select it. "Uniform" keeps the sampler's own spacing.
SCHEDULE_ARGS: dict[str, dict[str, Any]] = {
    AUTOMATIC: {},
    UNIFORM: {},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Simple": {"timestep_spacing": "trailing"},
}
# Schedule types no diffusers scheduler takes: a k-diffusion sampler runs them over their sigma table
# (engine.tasks.sigma_schedules, engine.tasks.ksampling).
K_SCHEDULES = frozenset({"Polyexponential", "KL Optimal", "Align Your Steps", "Normal", "DDIM"})
# Every Schedule type, in A1111's order (modules/sd_schedulers.py).
SCHEDULE_TYPES: tuple[str, ...] = (
    AUTOMATIC,
    UNIFORM,
    "Karras",
    "Exponential",
    "Polyexponential",
    "SGM Uniform",
    "KL Optimal",
    "Align Your Steps",
    "Simple",
    "Normal",
    "DDIM",
    "Beta",
)
SIGMA_SCHEDULES = frozenset({"Karras", "Exponential", "Beta"})


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler: which diffusers class runs it, with what arguments, and its default schedule."""

    name: str
    scheduler_class: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    default_schedule: str = UNIFORM
    # k-diffusion samplers space timesteps evenly from T to 0 (diffusers "linspace"); A1111's timestep
    # samplers (DDIM, PLMS, UniPC, LCM) keep the model's own "leading" spacing with steps_offset.
    k_diffusion: bool = True
    sigma_schedules: bool = True  # False where the diffusers class cannot take Karras/Exponential/Beta sigmas
    # The k-diffusion loop of this sampler (engine.tasks.ksampling), which runs it with any Schedule type;
    # a sampler without a diffusers class ("") always runs it.
    k_function: str = ""
    # An A1111 timestep sampler no diffusers class runs (engine.tasks.timestep_samplers): over A1111's own
    # timesteps, whatever the Schedule type says (A1111's timestep samplers ignore it too).
    timestep_function: str = ""

    @property
    def schedules(self) -> tuple[str, ...]:
        """Schedule types this sampler accepts: all of them with a k-diffusion loop, else those its diffusers
        class takes (a timestep sampler: the automatic one)."""
        if self.timestep_function:
            return (AUTOMATIC, UNIFORM)
        if self.k_function:
            return SCHEDULE_TYPES
        return tuple(
            s
            for s in SCHEDULE_TYPES
            if s in SCHEDULE_ARGS and (self.sigma_schedules or s not in SIGMA_SCHEDULES)
        )

    def runs_k_loop(self, schedule: str) -> bool:
        """Whether this sampler with this (concrete) schedule runs as a k-diffusion loop rather than through
        its diffusers scheduler (which keeps the images of the pairs diffusers has)."""
        if not self.k_function:
            return False
        if not self.scheduler_class or schedule in K_SCHEDULES:
            return True
        return schedule in SIGMA_SCHEDULES and not self.sigma_schedules


_SDE = {"algorithm_type": "sde-dpmsolver++"}
_DPM = "DPMSolverMultistepScheduler"

_BUILTIN = (
    SamplerSpec("DPM++ 2M", _DPM, {"algorithm_type": "dpmsolver++"}, "Karras", k_function="dpmpp_2m"),
    SamplerSpec("DPM++ 2M SDE", _DPM, _SDE, "Exponential", k_function="dpmpp_2m_sde"),
    SamplerSpec(
        "DPM++ 2M SDE Heun",
        _DPM,
        {**_SDE, "solver_type": "heun"},
        "Exponential",
        k_function="dpmpp_2m_sde_heun",
    ),
    SamplerSpec("DPM++ 3M SDE", _DPM, {**_SDE, "solver_order": 3}, "Exponential", k_function="dpmpp_3m_sde"),
    SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", {}, "Karras", k_function="dpmpp_sde"),
    SamplerSpec("DPM++ 2S a", "", {}, "Karras", k_function="dpmpp_2s_ancestral"),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", {}, "Karras", k_function="dpm_2"),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, "Karras", k_function="dpm_2_ancestral"),
    SamplerSpec("Euler", "EulerDiscreteScheduler", k_function="euler"),
    SamplerSpec(
        "Euler a", "EulerAncestralDiscreteScheduler", sigma_schedules=False, k_function="euler_ancestral"
    ),
    SamplerSpec("Heun", "HeunDiscreteScheduler", k_function="heun"),
    SamplerSpec("LMS", "LMSDiscreteScheduler", k_function="lms"),
    SamplerSpec("DPM fast", "", k_function="dpm_fast"),
    SamplerSpec("DPM adaptive", "", k_function="dpm_adaptive"),
    SamplerSpec("Restart", "", {}, "Karras", k_function="restart"),
    SamplerSpec(
        "DDIM", "DDIMScheduler", {"set_alpha_to_one": False}, k_diffusion=False, sigma_schedules=False
    ),
    SamplerSpec("DDIM CFG++", "", k_diffusion=False, sigma_schedules=False, timestep_function="ddim_cfgpp"),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, k_diffusion=False, sigma_schedules=False),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", k_diffusion=False),
    SamplerSpec("LCM", "LCMScheduler", k_diffusion=False, sigma_schedules=False),
)
# A1111's eta: sampler → (the infotext key A1111 writes, its default): `Eta DDIM` (setting eta_ddim) for its
# timestep samplers, `Eta` (setting eta_ancestral) for the k-diffusion samplers whose function takes an eta.
# A1111 writes the key only when the eta differs from the default.
_ANCESTRAL_ETA = ("Eta", 1.0)
ETA_SAMPLERS: Mapping[str, tuple[str, float]] = MappingProxyType(
    {
        "DDIM": ("Eta DDIM", 0.0),
        "DDIM CFG++": ("Eta DDIM", 0.0),
        **dict.fromkeys(
            (
                "Euler a",
                "DPM2 a",
                "DPM++ 2S a",
                "DPM++ SDE",
                "DPM++ 2M SDE",
                "DPM++ 2M SDE Heun",
                "DPM++ 3M SDE",
                "DPM fast",
                "DPM adaptive",
            ),
            _ANCESTRAL_ETA,
        ),
    }
)
# Samplers whose step noise A1111 seeds with seed + ENSD (its `uses_ensd`), when their eta is not 0.
ENSD_SAMPLERS = frozenset({"Euler a", "DPM2 a", "DDIM", "DPM++ 2S a", "DPM fast", "DPM adaptive"})


def effective_eta(sampler: str, eta: float | None) -> float:
    """The eta a sampler runs with: the request's, else the sampler's default (1 for the ancestral ones)."""
    if sampler in ETA_SAMPLERS:
        return ETA_SAMPLERS[sampler][1] if eta is None else eta
    return 1.0


def needs_k_eta(spec: SamplerSpec, eta: float | None) -> bool:
    """Whether an eta other than the sampler's default runs its k-diffusion loop (its diffusers scheduler
    takes no eta)."""
    if not spec.k_function or spec.name not in ETA_SAMPLERS or eta is None:
        return False
    return eta != ETA_SAMPLERS[spec.name][1]


def uses_ensd(sampler: str, eta: float | None, delta: int) -> bool:
    """Whether ENSD changes this sampler's images (and so is written in the infotext, as A1111 does)."""
    return delta != 0 and sampler in ENSD_SAMPLERS and effective_eta(sampler, eta) != 0


# The built-in samplers: a constant nobody changes (an extension's samplers go into a `SamplerTable`).
SAMPLERS: Mapping[str, SamplerSpec] = MappingProxyType({s.name: s for s in _BUILTIN})


def extension_sampler(
    name: str,
    scheduler_class: str,
    default_schedule: str = AUTOMATIC,
    arguments: Mapping[str, Any] | None = None,
) -> SamplerSpec:
    """An extension's sampler: a diffusers scheduler class with its arguments, under a new A1111-style name.

    Checks (importing diffusers) that the class exists, so that an extension naming a wrong one fails to load."""
    import diffusers

    if not hasattr(diffusers, scheduler_class):
        raise ValueError(f"diffusers has no scheduler class {scheduler_class!r}")
    schedule = UNIFORM if default_schedule == AUTOMATIC else default_schedule
    return SamplerSpec(name, scheduler_class, dict(arguments or {}), schedule)


@dataclass(frozen=True)
class SamplerTable:
    """The samplers one process knows: the built-ins and its extensions'. Plain data (no torch), built once by
    the composition root (app/) and handed to the queue's validation, the engine and the front ends;
    `with_samplers` makes a new table and never changes this one."""

    specs: Mapping[str, SamplerSpec] = field(default_factory=lambda: SAMPLERS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "specs", MappingProxyType(dict(self.specs)))

    @property
    def names(self) -> tuple[str, ...]:
        """Every sampler's name, the built-ins first."""
        return tuple(self.specs)

    def with_samplers(self, specs: Iterable[SamplerSpec]) -> SamplerTable:
        """This table with more samplers (an extension's); a different sampler under a known name is an error
        (the same one again is not)."""
        table = dict(self.specs)
        for spec in specs:
            existing = _lookup(tuple(table), spec.name)
            if existing is not None:
                if table[existing] == spec:
                    continue
                raise ValueError(f"a different sampler named {spec.name!r} exists already")
            table[spec.name] = spec
        return SamplerTable(table)

    def resolve(self, sampler: str, schedule: str = AUTOMATIC) -> tuple[SamplerSpec, str]:
        """Validate an A1111 (sampler, schedule type) pair; return the spec and the concrete schedule to use.

        Accepts legacy combined names ("DPM++ 2M Karras") when no schedule is given. "Automatic" becomes the
        sampler's A1111 default, which is what the infotext records.
        """
        names = self.names
        name = _lookup(names, sampler)
        if name is None and schedule.strip().casefold() == AUTOMATIC.casefold():
            name, schedule = _split_combined(names, sampler)
        if name is None:
            raise InvalidRequest("sampler", f"unknown sampler {sampler!r}; choose one of: {', '.join(names)}")
        spec = self.specs[name]
        chosen = _lookup(spec.schedules, schedule)
        if chosen is None:
            raise InvalidRequest(
                "schedule",
                f"schedule type {schedule!r} is not available for {name}; choose one of: {', '.join(spec.schedules)}",
            )
        return spec, spec.default_schedule if chosen == AUTOMATIC else chosen


BUILTIN_SAMPLERS = SamplerTable()


def _lookup(names: tuple[str, ...], value: str) -> str | None:
    folded = value.strip().casefold()
    return next((n for n in names if n.casefold() == folded), None)


def _split_combined(names: tuple[str, ...], sampler: str) -> tuple[str | None, str]:
    for schedule in SCHEDULE_TYPES:
        suffix = " " + schedule.casefold()
        if sampler.strip().casefold().endswith(suffix):
            name = _lookup(names, sampler.strip()[: -len(suffix)])
            if name is not None:
                return name, schedule
    return None, AUTOMATIC


def scheduler_kwargs(spec: SamplerSpec, schedule: str, seeds: list[int] | None = None) -> dict[str, Any]:
    """The keyword arguments (over the model's scheduler config) that make `spec` with `schedule`."""
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if spec.k_diffusion:
        kwargs["timestep_spacing"] = "linspace"
    kwargs.update(SCHEDULE_ARGS[schedule])
    if spec.scheduler_class == "DPMSolverSDEScheduler" and seeds is not None:
        # One Brownian tree per image, seeded by the image's seed, so a batch equals its images run alone.
        kwargs["noise_sampler_seed"] = seeds if len(seeds) > 1 else seeds[0]
    return kwargs


def build_scheduler(
    spec: SamplerSpec, schedule: str, base_config: Mapping[str, Any], seeds: list[int] | None = None
):
    """A fresh diffusers scheduler for one run (schedulers keep per-run state, so never share one)."""
    import inspect

    import diffusers

    cls = getattr(diffusers, spec.scheduler_class)
    accepted = inspect.signature(cls.__init__).parameters
    # Keep the model's training facts (betas, prediction type, offset); drop settings of the model's own
    # scheduler class that would change another sampler's algorithm.
    config = {k: v for k, v in base_config.items() if k in accepted and k not in _ALGORITHM_KEYS}
    config.update(scheduler_kwargs(spec, schedule, seeds))
    return cls.from_config(config)


_ALGORITHM_KEYS = frozenset(
    {
        "algorithm_type",
        "solver_type",
        "solver_order",
        "use_karras_sigmas",
        "use_exponential_sigmas",
        "use_beta_sigmas",
        "skip_prk_steps",
        "timestep_spacing",
        "set_alpha_to_one",
        "final_sigmas_type",
        "noise_sampler_seed",
    }
)
