"""Deforum-style animation: 2D camera moves made of img2img steps, and interpolation between prompts.

Read top to bottom: the settings (Deforum's names and defaults), the plan (every schedule, prompt and seed
computed for every frame before anything runs, so bad input fails before the GPU is asked), then the render:
frames come in units that a job can stop between and resume from, each frame a PNG with its infotext.

2D mode, one unit per diffused frame: the last diffused frame is moved by the camera (the frames' motions
composed into one affine warp), matched in colour to the colour reference, scaled by the contrast, blended
towards noise, then denoised by img2img at 1 − strength (its noise × the noise multiplier), and matched in colour
again. As Deforum (render.py): the reference is the first frame, matched to before and after img2img; with
`legacy_colormatch` it is the first moved frame (replaced by any frame made at strength 0), matched to before
img2img only. With diffusion cadence N only every Nth frame is diffused; a frame between two diffused ones blends
the earlier one moved forward and the later one moved back to that frame's camera, so both halves line up
(Deforum blends two earlier frames both moved forward, which lags one cadence).
Prompts: each keyframe's prompt holds until the next keyframe, as Deforum's 2D mode; `blend_prompts` instead
blends the next keyframe's conditioning in, more with every frame. `` `expressions` `` in a prompt are computed
at each frame (engine/animation/schedules.py, no eval).
Interpolation mode: every frame is a txt2img whose prompt conditioning and starting noise move from one
prompt keyframe to the next (the noise by A1111's variation seed, the prompt by a weighted blend).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, astuple, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.camera3d import Settings3D, check_3d, plan_cameras
from engine.animation.color_sample import ColorMatch, color_match
from engine.animation.flow import cadence_frame
from engine.animation.frame_noise import NOISE_TYPES, Perlin, add_noise, perlin_problem
from engine.animation.frame_ops import (
    BORDERS,
    COLOR_COHERENCE,
    adjust_contrast,
    match_colors,
    motion_matrix,
    warp,
)
from engine.animation.remake import remake_frame as remake_frame  # re-exported: it lived here
from engine.animation.schedules import ScheduleError, parse_expression, prompt_math, schedule_values
from engine.animation.video_input import mark_video_frame
from engine.animation.video_options import VideoOptions, check_video_settings, hybrid_of, video_source
from engine.infotext import format_infotext, parse_infotext
from engine.requests import GenerationRequest, Img2ImgRequest, PromptBlend, RunControl

MODES = ("2D", "3D", "Interpolation", "Video Input")
SEED_BEHAVIORS = ("iter", "fixed", "random", "ladder", "alternate", "schedule")
SEED_LIMIT = 2**32 - 1
MAX_FRAMES = 10_000
NUMERIC_SCHEDULES = (
    "angle",
    "zoom",
    "translation_x",
    "translation_y",
    "transform_center_x",
    "transform_center_y",
    "strength_schedule",
    "noise_schedule",
    "contrast_schedule",
    "cfg_scale_schedule",
    "steps_schedule",
    "seed_schedule",
    "noise_multiplier_schedule",
)


@dataclass(frozen=True)
class AnimationSettings(Settings3D, VideoOptions):  # 3D: camera3d.py; flow, video, hybrid: video_options.py
    """An animation, with Deforum's option names (settings files map onto these) and its defaults."""

    prompts: Mapping[str, str] = field(default_factory=lambda: {"0": "a beautiful landscape"})
    positive_prompt: str = ""  # Deforum's animation_prompts_positive: put before every prompt
    negative_prompt: str = ""  # animation_prompts_negative: added to every negative prompt
    animation_mode: str = "2D"
    max_frames: int = 120
    width: int = 512
    height: int = 512
    model: str | None = None
    sampler: str = "Euler a"
    steps: int = 25
    seed: int = -1
    seed_behavior: str = "iter"
    seed_iter_n: int = 1
    angle: str = "0:(0)"
    zoom: str = "0:(1.0025+0.002*sin(1.25*3.14*t/30))"
    translation_x: str = "0:(0)"
    translation_y: str = "0:(0)"
    transform_center_x: str = "0:(0.5)"
    transform_center_y: str = "0:(0.5)"
    strength_schedule: str = "0:(0.65)"
    noise_schedule: str = "0:(0.065)"
    contrast_schedule: str = "0:(1.0)"
    cfg_scale_schedule: str = "0:(7)"
    enable_steps_scheduling: bool = False
    steps_schedule: str = "0:(25)"
    seed_schedule: str = '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'
    color_coherence: str = "LAB"
    legacy_colormatch: bool = False  # match to the first moved frame, before img2img only
    noise_type: str = "perlin"  # or "uniform"
    perlin_w: int = 8  # Perlin cells down the frame (Deforum's name)
    perlin_h: int = 8  # and across it
    perlin_octaves: int = 4
    perlin_persistence: float = 0.5
    # img2img's starting noise × this schedule (A1111's "noise multiplier"), when enabled
    enable_noise_multiplier_scheduling: bool = True
    noise_multiplier_schedule: str = "0: (1.05)"
    # 2D: blend the next prompt keyframe in, more with every frame (Salon's option); Deforum holds each prompt
    blend_prompts: bool = False
    border: str = "replicate"
    diffusion_cadence: int = 1
    fps: float = 15.0

    @property
    def perlin(self) -> Perlin:
        return Perlin(self.perlin_w, self.perlin_h, self.perlin_octaves, self.perlin_persistence)

    def to_json(self) -> dict:
        return {**asdict(self), "prompts": dict(self.prompts)}

    @classmethod
    def from_json(cls, data: Mapping) -> AnimationSettings:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class FramePlan:
    """Everything one frame needs, computed before the animation starts."""

    frame: int
    prompt: str
    negative_prompt: str
    blend: PromptBlend | None
    seed: int
    diffused: bool
    zoom: float = 1.0
    angle: float = 0.0
    translation_x: float = 0.0
    translation_y: float = 0.0
    center_x: float = 0.5
    center_y: float = 0.5
    strength: float = 0.65
    noise: float = 0.0
    contrast: float = 1.0
    cfg_scale: float = 7.0
    steps: int = 25
    noise_multiplier: float = 1.0
    variation_seed: int = -1  # interpolation: the next keyframe's seed
    variation_strength: float = 0.0

    def matrix(self, width: int, height: int) -> np.ndarray:
        return motion_matrix(
            width,
            height,
            self.zoom,
            self.angle,
            self.translation_x,
            self.translation_y,
            self.center_x,
            self.center_y,
        )


# ----- checking and planning --------------------------------------------------------------------------------


def check_settings(settings: AnimationSettings, max_size: int = 2048, max_steps: int = 150) -> None:
    """Every option in range and every schedule readable; InvalidRequest/ScheduleError names the option."""
    if settings.animation_mode not in MODES:
        raise InvalidRequest(
            "animation_mode",
            f"{settings.animation_mode!r} is not one of: {', '.join(MODES)}",
        )
    if not 1 <= settings.max_frames <= MAX_FRAMES:
        raise InvalidRequest("max_frames", f"{settings.max_frames} is not from 1 to {MAX_FRAMES}")
    for option, value in (("width", settings.width), ("height", settings.height)):
        if value % 8 or not 64 <= value <= max_size:
            raise InvalidRequest(option, f"{value} is not a multiple of 8 from 64 to {max_size}")
    if not 1 <= settings.steps <= max_steps:
        raise InvalidRequest("steps", f"{settings.steps} is not from 1 to {max_steps}")
    if settings.seed != -1 and not 0 <= settings.seed <= SEED_LIMIT:
        raise InvalidRequest("seed", f"{settings.seed} is not -1 (random) or from 0 to {SEED_LIMIT}")
    if settings.seed_behavior not in SEED_BEHAVIORS:
        raise InvalidRequest(
            "seed_behavior", f"{settings.seed_behavior!r} is not one of: {', '.join(SEED_BEHAVIORS)}"
        )
    if not 1 <= settings.seed_iter_n <= 1000:
        raise InvalidRequest("seed_iter_n", f"{settings.seed_iter_n} is not from 1 to 1000")
    if settings.color_coherence not in COLOR_COHERENCE:
        raise InvalidRequest(
            "color_coherence", f"{settings.color_coherence!r} is not one of: {', '.join(COLOR_COHERENCE)}"
        )
    if settings.border not in BORDERS:
        raise InvalidRequest("border", f"{settings.border!r} is not one of: {', '.join(BORDERS)}")
    if not 1 <= settings.diffusion_cadence <= 50:
        raise InvalidRequest("diffusion_cadence", f"{settings.diffusion_cadence} is not from 1 to 50")
    if not 1 <= settings.fps <= 60:
        raise InvalidRequest("fps", f"{settings.fps} is not from 1 to 60")
    for option in ("legacy_colormatch", "enable_noise_multiplier_scheduling", "blend_prompts"):
        if not isinstance(getattr(settings, option), bool):
            raise InvalidRequest(option, f"{getattr(settings, option)!r} is not true or false")
    _check_noise(settings)
    check_3d(settings)
    check_video_settings(settings)
    if not settings.prompts:
        raise InvalidRequest("prompts", 'give at least one prompt, e.g. {"0": "a cat"}')


def _check_noise(settings: AnimationSettings) -> None:
    if settings.noise_type not in NOISE_TYPES:
        raise InvalidRequest("noise_type", f"{settings.noise_type!r} is not one of: {', '.join(NOISE_TYPES)}")
    for option, low, high in (("perlin_w", 1, 16), ("perlin_h", 1, 16), ("perlin_octaves", 1, 7)):
        value = getattr(settings, option)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidRequest(option, f"{value!r} is not a whole number from {low} to {high}")
    if not isinstance(settings.perlin_persistence, int | float) or not 0 <= settings.perlin_persistence <= 1:
        raise InvalidRequest("perlin_persistence", f"{settings.perlin_persistence!r} is not from 0 to 1")
    if settings.animation_mode != "Interpolation" and settings.noise_type == "perlin":
        problem = perlin_problem(settings.width, settings.height, settings.perlin)
        if problem:
            raise InvalidRequest("noise_type", problem)


def plan_frames(settings: AnimationSettings, seed: int) -> list[FramePlan]:
    """Every frame's prompt, seed and schedule values (`seed` is the animation's resolved start seed)."""
    check_settings(settings)
    n = settings.max_frames
    values = {
        name: schedule_values(getattr(settings, name), name, n, seed, integer=name in ("steps_schedule",))
        for name in NUMERIC_SCHEDULES
    }
    _check_values(values, settings)
    prompts = prompt_keyframes(settings.prompts, n, seed)
    cadence = 1 if settings.animation_mode in ("Interpolation", "Video Input") else settings.diffusion_cadence
    if settings.animation_mode == "3D":
        plan_cameras(settings, seed)  # the 3D schedules computed once: bad input fails here
    diffused = [frame % cadence == 0 for frame in range(n)]
    seeds = _frame_seeds(settings, seed, values["seed_schedule"], diffused)
    blends = settings.blend_prompts or settings.animation_mode == "Interpolation"
    frames = []
    for frame in range(n):
        text, negative, other, weight = _prompt_at(prompts, frame)
        prompt, negative = _with_globals(text, negative, settings, frame, seed)
        other_blend = None
        if blends and other is not None and weight > 0:
            other_prompt, other_negative = _with_globals(other[0], other[1], settings, frame, seed)
            other_blend = PromptBlend(other_prompt, other_negative, round(weight, 6))
        plan = FramePlan(
            frame,
            prompt,
            negative,
            other_blend,
            seeds[frame],
            diffused[frame],
            zoom=values["zoom"][frame],
            angle=values["angle"][frame],
            translation_x=values["translation_x"][frame],
            translation_y=values["translation_y"][frame],
            center_x=values["transform_center_x"][frame],
            center_y=values["transform_center_y"][frame],
            strength=round(values["strength_schedule"][frame], 6),
            noise=values["noise_schedule"][frame],
            contrast=values["contrast_schedule"][frame],
            cfg_scale=round(values["cfg_scale_schedule"][frame], 4),  # as the infotext writes it
            steps=int(values["steps_schedule"][frame])
            if settings.enable_steps_scheduling
            else settings.steps,
            noise_multiplier=values["noise_multiplier_schedule"][frame]
            if settings.enable_noise_multiplier_scheduling
            else 1.0,
        )
        frames.append(plan)
    if settings.animation_mode == "Interpolation":
        frames = _interpolation_seeds(frames, prompts)
    return frames


def _check_values(values: dict[str, list[float]], settings: AnimationSettings) -> None:
    def each(name: str, ok: Callable[[float], bool], allowed: str) -> None:
        for frame, value in enumerate(values[name]):
            if not ok(value):
                raise ScheduleError(name, f"is {value:g} at frame {frame}; it must be {allowed}")

    each("zoom", lambda v: 0.01 <= v <= 100, "from 0.01 to 100")
    each("strength_schedule", lambda v: 0 <= v <= 1, "from 0 to 1")
    each("noise_schedule", lambda v: 0 <= v <= 10, "from 0 to 10")
    each("contrast_schedule", lambda v: 0 <= v <= 10, "from 0 to 10")
    each("cfg_scale_schedule", lambda v: 1 <= v <= 30, "from 1 to 30")
    each("translation_x", lambda v: abs(v) <= 10 * settings.width, "within 10 widths")
    each("translation_y", lambda v: abs(v) <= 10 * settings.height, "within 10 heights")
    if settings.enable_steps_scheduling:
        each("steps_schedule", lambda v: 1 <= v <= 150, "from 1 to 150")
    if settings.enable_noise_multiplier_scheduling:
        each("noise_multiplier_schedule", lambda v: 0 <= v <= 2, "from 0 to 2")
    if settings.seed_behavior == "schedule":
        each("seed_schedule", lambda v: v == -1 or 0 <= v <= SEED_LIMIT, f"-1 or from 0 to {SEED_LIMIT}")


def prompt_keyframes(prompts: Mapping[str, str], max_frames: int, seed: int) -> list[tuple[int, str, str]]:
    """Deforum's prompt schedule: frame (a number, or an expression of max_f and s) → (positive, negative);
    `--neg` splits a prompt (as Deforum's prepare_prompt: the text after every `--neg` is the negative).
    Keyframes past the last frame are dropped, as Deforum does."""
    found: dict[int, tuple[str, str]] = {}
    for key, text in prompts.items():
        if not isinstance(text, str):
            raise InvalidRequest("prompts", f"the prompt of frame {key!r} is not text")
        try:
            frame = int(parse_expression(str(key), f"prompts key {key!r}")(0, max_frames - 1, seed))
        except (ArithmeticError, ValueError) as exc:
            raise InvalidRequest("prompts", f"the frame {key!r} cannot be computed: {exc}") from None
        positive, *after = text.split("--neg")
        negative = "".join(after)
        if 0 <= frame < max_frames:
            found[frame] = (positive.strip(), negative.strip())
    if not found:
        raise InvalidRequest("prompts", f"no prompt keyframe falls within the {max_frames} frames")
    return [(frame, *found[frame]) for frame in sorted(found)]


def _prompt_at(keyframes: list[tuple[int, str, str]], frame: int):
    """The prompt of the last keyframe at or before `frame`, the next keyframe's, and its weight (linear)."""
    before = [k for k in keyframes if k[0] <= frame]
    current = before[-1] if before else keyframes[0]
    later = [k for k in keyframes if k[0] > frame]
    if not before or not later:
        return current[1], current[2], None, 0.0
    following = later[0]
    weight = (frame - current[0]) / (following[0] - current[0])
    return current[1], current[2], (following[1], following[2]), weight


def _with_globals(
    prompt: str, negative: str, settings: AnimationSettings, frame: int, seed: int
) -> tuple[str, str]:
    """The frame's prompts as Deforum composes them (args.py process_args: `{positive} {prompt} --neg
    {negative}`, so the global negative follows the keyframe's after a space) with the backtick math computed at
    the frame."""
    joined = " ".join(part for part in (settings.positive_prompt.strip(), prompt) if part)
    negatives = " ".join(
        part for part in (negative, settings.negative_prompt.replace("--neg", "").strip()) if part
    )
    last = settings.max_frames - 1
    return (
        prompt_math(joined, frame, last, seed, f"prompts at frame {frame}"),
        prompt_math(negatives, frame, last, seed, f"negative prompts at frame {frame}"),
    )


def _frame_seeds(
    settings: AnimationSettings, start: int, scheduled: list[float], diffused: list[bool]
) -> list[int]:
    """Deforum's seed behaviours (seed.py `next_seed`), advanced after each diffused frame; "random" draws from
    a generator seeded by the start seed, so the same settings give the same frames."""
    rng = random.Random(start)
    seeds, seed, internal = [], start, 0
    for frame, is_diffused in enumerate(diffused):
        if settings.seed_behavior == "schedule":
            value = int(scheduled[frame])
            seeds.append(rng.randint(0, SEED_LIMIT) if value == -1 else value)
            continue
        seeds.append(seed)
        if not is_diffused:
            continue
        behavior = settings.seed_behavior
        if behavior == "iter":
            seed += 1 if internal % settings.seed_iter_n == 0 else 0
            internal += 1
        elif behavior in ("ladder", "alternate"):
            seed += (2 if behavior == "ladder" else 1) if internal == 0 else -1
            internal = 1 if internal == 0 else 0
        elif behavior == "random":
            seed = rng.randint(0, SEED_LIMIT)
        seed %= SEED_LIMIT + 1
    return seeds


def _interpolation_seeds(frames: list[FramePlan], keyframes: list[tuple[int, str, str]]) -> list[FramePlan]:
    """Interpolation mode: each keyframe keeps its own seed; frames between move from it to the next
    keyframe's seed by A1111's variation seed (noise slerped) with the prompt blend's weight."""
    by_key = {k[0]: frames[k[0]].seed for k in keyframes}
    out = []
    for plan in frames:
        before = [k[0] for k in keyframes if k[0] <= plan.frame]
        later = [k[0] for k in keyframes if k[0] > plan.frame]
        key = before[-1] if before else keyframes[0][0]
        if before and later and plan.blend is not None:
            out.append(
                replace(
                    plan,
                    seed=by_key[key],
                    variation_seed=by_key[later[0]],
                    variation_strength=plan.blend.weight,
                )
            )
        else:
            out.append(replace(plan, seed=by_key[key]))
    return out


# ----- rendering --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """Frames rendered together: `key` is the frame diffused (None for a tail that is only moved), `frames`
    the frames written, in order."""

    key: int | None
    frames: tuple[int, ...]


def units(settings: AnimationSettings) -> list[Unit]:
    """The render order: one unit per diffused frame (with the frames before it since the previous one)."""
    n = settings.max_frames
    if settings.animation_mode in ("Interpolation", "Video Input"):
        return [Unit(frame, (frame,)) for frame in range(n)]
    cadence = settings.diffusion_cadence
    keys = list(range(0, n, cadence))
    out = [Unit(0, (0,))]
    for previous, key in zip(keys, keys[1:], strict=False):
        out.append(Unit(key, tuple(range(previous + 1, key + 1))))
    if keys[-1] < n - 1:
        out.append(Unit(None, tuple(range(keys[-1] + 1, n))))
    return out


def frame_path(folder: Path, frame: int) -> Path:
    return folder / f"{frame:05d}.png"


class AnimationRenderer:
    """Renders units of an animation into `folder` (frames as PNGs with infotext) with an engine."""

    def __init__(self, engine, settings: AnimationSettings, seed: int, folder: Path) -> None:
        self.engine = engine
        self.settings = settings
        self.seed = seed
        self.folder = folder
        self.plan = plan_frames(settings, seed)
        self._references: dict[tuple[int, int | None], Image.Image] = {}  # colour samples, made once
        self.units = units(settings)
        self.video = video_source(settings, engine, folder)  # input frames (video input, hybrid video)
        self.hybrid = hybrid_of(settings, self.video, seed)

    def render_unit(self, index: int, control: RunControl | None = None) -> list[int]:
        """Render unit `index` (earlier units' frames must be on disk); returns the frames written."""
        unit = self.units[index]
        self.folder.mkdir(parents=True, exist_ok=True)
        control = control or RunControl()
        if self.settings.animation_mode == "Interpolation":
            assert unit.key is not None
            image, text = self._txt2img(self.plan[unit.key], control)
            self._save(unit.key, image, text)
            return [unit.key]
        if self.settings.animation_mode == "Video Input":  # each frame made from its input frame
            image, text = self.diffuse_from(self.video.frame(k := unit.key), np.eye(3), self.plan[k], control)
            self._save(unit.key, image, mark_video_frame(text, unit.key))
            return [unit.key]
        if unit.key == 0:
            image, text = self._txt2img(self.plan[0], control)
            self._save(0, image, text)
            return [0]
        last_key = unit.frames[0] - 1
        previous = self._load(last_key)
        if unit.key is None:  # the tail after the last diffused frame: moved only
            for frame in unit.frames:
                moved = warp(previous, self._motion(last_key, frame), self.settings.border)
                self._save(frame, moved, self._between_text(frame, last_key, None))
            return list(unit.frames)
        key_plan = self.plan[unit.key]
        diffused, text = self.diffuse_from(previous, self._motion(last_key, unit.key), key_plan, control)
        for frame in unit.frames[:-1]:
            forward = warp(previous, self._motion(last_key, frame), self.settings.border)
            back = warp(diffused, np.linalg.inv(self._motion(frame, unit.key)), self.settings.border)
            tween = (frame - last_key) / (unit.key - last_key)
            between = cadence_frame(forward, back, tween, self.settings.optical_flow_cadence)  # flow.py
            self._save(frame, between, self._between_text(frame, last_key, unit.key))
        self._save(unit.key, diffused, text)
        return list(unit.frames)

    def diffuse_from(
        self, previous: Image.Image, matrix: np.ndarray, plan: FramePlan, control: RunControl
    ) -> tuple[Image.Image, str]:
        """One 2D step: move, match colours, contrast, noise, img2img at 1 − strength, match colours again."""
        s = self.settings
        moved = self.hybrid.before_diffusion(warp(previous, matrix, s.border), plan.frame)
        diffused = [p.frame for p in self.plan if p.diffused]
        strengths = [p.strength for p in self.plan]
        match = color_match(s.color_coherence, s.legacy_colormatch, diffused, strengths, plan.frame)
        reference = self._reference(match) if match is not None and match.when != "none" else None
        if match is not None and match.before:
            moved = match_colors(moved, reference, s.color_coherence)
        moved = add_noise(
            adjust_contrast(moved, plan.contrast), plan.noise, plan.seed, s.noise_type, s.perlin
        )
        request = Img2ImgRequest(
            self._params(plan),
            moved,
            denoising_strength=round(1 - plan.strength, 6),
            noise_multiplier=plan.noise_multiplier,
        )
        result = self.engine.img2img(request, control).images[0]
        image = self.hybrid.after_generation(result.image, plan.frame)
        if match is not None and match.after:
            image = match_colors(image, reference, s.color_coherence)
        return image, self._frame_text(result.infotext, plan, matrix, match)

    def _reference(self, match: ColorMatch) -> Image.Image:
        key = (match.source, match.moved_to)
        if key not in self._references:
            image = self._load(match.source)
            if match.moved_to is not None:
                image = warp(image, self._motion(match.source, match.moved_to), self.settings.border)
            self._references[key] = image
        return self._references[key]

    def _txt2img(self, plan: FramePlan, control: RunControl) -> tuple[Image.Image, str]:
        result = self.engine.txt2img(self._params(plan), control).images[0]
        return result.image, self._frame_text(result.infotext, plan, None)

    def _params(self, plan: FramePlan) -> GenerationRequest:
        s = self.settings
        return GenerationRequest(
            plan.prompt,
            plan.negative_prompt,
            model=s.model,
            sampler=s.sampler,
            steps=plan.steps,
            cfg_scale=plan.cfg_scale,
            seed=plan.seed,
            width=s.width,
            height=s.height,
            variation_seed=plan.variation_seed,
            variation_strength=plan.variation_strength,
            blend=plan.blend,
        )

    def _motion(self, start: int, end: int) -> np.ndarray:
        """The camera move from frame `start` to frame `end` (start < end): each frame's motion in turn."""
        matrix = np.eye(3)
        for frame in range(start + 1, end + 1):
            matrix = self.plan[frame].matrix(self.settings.width, self.settings.height) @ matrix
        return matrix

    def _frame_text(
        self, infotext: str, plan: FramePlan, matrix: np.ndarray | None, match: ColorMatch | None = None
    ) -> str:
        """The engine's infotext plus what the animation did to the previous frame, so a frame can be made
        again from its PNG and the previous frame's (and the colour reference's, for colour coherence)."""
        info = parse_infotext(infotext)
        s = self.settings
        extra: dict[str, str] = {"Animation": f"{s.animation_mode} frame {plan.frame} of {s.max_frames}"}
        if matrix is not None:
            extra["Animation motion"] = " ".join(repr(float(v)) for v in matrix[:2].ravel())  # exact
            extra["Animation noise"] = repr(plan.noise)
            extra["Animation noise type"] = s.noise_type
            if s.noise_type == "perlin":
                extra["Animation perlin"] = " ".join(repr(v) for v in astuple(s.perlin))
            extra["Animation contrast"] = repr(plan.contrast)
            extra["Animation color coherence"] = s.color_coherence
            if match is not None:
                extra["Animation color match"] = match.when
                extra["Animation color reference"] = match.reference
            extra["Animation border"] = s.border
            if plan.noise_multiplier != 1:
                extra["Noise multiplier"] = repr(plan.noise_multiplier)
        version = info.params.pop("Version", None)
        params = {**info.params, **extra, **({"Version": version} if version else {})}
        return format_infotext(info.prompt, info.negative_prompt, params)

    def _between_text(self, frame: int, before: int, after: int | None) -> str:
        s = self.settings
        made = f"moved from frame {before}" if after is None else f"blended from frames {before} and {after}"
        params = {
            "Animation": f"{s.animation_mode} frame {frame} of {s.max_frames}",
            "Animation cadence": str(s.diffusion_cadence),
            "Animation frame source": made,
            "Size": f"{s.width}x{s.height}",
        }
        return format_infotext(self.plan[frame].prompt, self.plan[frame].negative_prompt, params)

    def _save(self, frame: int, image: Image.Image, text: str) -> None:
        from engine.infotext_files import save_image_with_infotext

        save_image_with_infotext(image, frame_path(self.folder, frame), text)

    def _load(self, frame: int) -> Image.Image:
        with Image.open(frame_path(self.folder, frame)) as image:
            return image.convert("RGB")


def resolve_seed(seed: int) -> int:
    """Seed −1 becomes a random start seed (fixed once, when the job is accepted)."""
    return random.randint(0, SEED_LIMIT) if seed == -1 else seed
