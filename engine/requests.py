"""Requests and results: small immutable values that travel from a front end through the queue to the engine.

Every request has `params`, its generation parameters (a txt2img request is its own); `with_params` gives
the same kind of request with other ones, `with_fixed_seeds` the same one with its random seeds fixed. The
defaults every front end and follow-up uses are named here.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from engine.seeds import resolve_seed

if TYPE_CHECKING:
    from PIL import Image

AUTOMATIC = "Automatic"  # the schedule type that lets the sampler choose (engine.tasks.samplers)

# The defaults of a request where neither the user nor the server's settings say otherwise; every front end
# and follow-up takes them from here.
DEFAULT_SAMPLER = "DPM++ 2M"
DEFAULT_STEPS = 20
DEFAULT_CFG_SCALE = 7.0
DEFAULT_SIZE = 512  # width and height when the model's own size is not known
DEFAULT_REFINER_SWITCH_AT = 0.8  # A1111's "Switch at" default
# A1111's `sd_vae` values that mean "the checkpoint's own VAE" (Salon picks no VAE by the checkpoint's name).
OWN_VAE_NAMES = ("Automatic", "None")


def vae_choice(name: str | None) -> str | None:
    """The VAE a request names (a file name's stem: A1111 writes and sends the file name), or None for the
    checkpoint's own ("Automatic", "None" or nothing)."""
    if name is None or not name.strip() or name.strip().casefold() in {n.casefold() for n in OWN_VAE_NAMES}:
        return None
    name = name.strip()
    for suffix in (".safetensors", ".ckpt", ".pt"):
        if name.casefold().endswith(suffix):
            return name[: -len(suffix)]
    return name


class ResizeMode(StrEnum):
    """A1111 img2img resize modes, by their UI labels."""

    JUST_RESIZE = "Just resize"
    CROP_AND_RESIZE = "Crop and resize"
    RESIZE_AND_FILL = "Resize and fill"
    LATENT_UPSCALE = "Just resize (latent upscale)"


class MaskedContent(StrEnum):
    """What the masked area starts from before inpainting (A1111 "Masked content")."""

    FILL = "fill"
    ORIGINAL = "original"
    LATENT_NOISE = "latent noise"
    LATENT_NOTHING = "latent nothing"


class InpaintArea(StrEnum):
    WHOLE_PICTURE = "Whole picture"
    ONLY_MASKED = "Only masked"


class HiresUpscaler(StrEnum):
    """Upscalers of the hires pass. "Latent" resizes latents; the others resize decoded pixels."""

    LATENT = "Latent"
    LATENT_NEAREST = "Latent (nearest)"
    LANCZOS = "Lanczos"
    NEAREST = "Nearest"


def hires_upscaler(name: str | None) -> HiresUpscaler | str:
    """A hires upscaler by name: one of `HiresUpscaler` (any case; empty: Latent), else the name of a model
    upscaler (engine/upscaling), which the queue checks is installed."""
    wanted = (name or "").strip()
    for member in HiresUpscaler:
        if member.value.casefold() == (wanted or HiresUpscaler.LATENT.value).casefold():
            return member
    return wanted


@dataclass(frozen=True)
class HiresFix:
    """A1111's hires fix: generate at the base size, upscale, then img2img at the larger size.

    The second pass's own prompt, negative prompt, sampler, schedule and CFG scale: empty / None means the
    first pass's (A1111's "Use same"). `resize_width`/`resize_height` ("Resize width/height to") replace the
    scale when either is > 0: one side given keeps the aspect ratio, both given crop to that size."""

    scale: float = 2.0
    steps: int = 0  # 0 = as many as the first pass
    denoising_strength: float = 0.7
    upscaler: HiresUpscaler | str = HiresUpscaler.LATENT  # a plain str: a model upscaler's name
    prompt: str = ""
    negative_prompt: str = ""
    sampler: str = ""
    schedule: str = ""
    cfg_scale: float | None = None
    resize_width: int = 0
    resize_height: int = 0


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The hires target: the base size times the scale, rounded down to a multiple of 8."""
    return int(width * scale) // 8 * 8, int(height * scale) // 8 * 8


def hires_plan(width: int, height: int, hires: HiresFix) -> tuple[tuple[int, int], tuple[int, int]]:
    """((upscale to), (final size)) of a hires pass, multiples of 8, as A1111 computes them: the scale, or
    "resize to" one side (the other by the aspect ratio), or both sides (upscaled to cover, then cropped)."""
    rx, ry = hires.resize_width, hires.resize_height
    if rx <= 0 and ry <= 0:
        size = hires_size(width, height, hires.scale)
        return size, size
    if ry <= 0:
        up = (rx, rx * height // width)
    elif rx <= 0:
        up = (ry * width // height, ry)
    elif width / height < rx / ry:
        up = (rx, rx * height // width)
    else:
        up = (ry * width // height, ry)
    up = (up[0] // 8 * 8, up[1] // 8 * 8)
    final = (min(rx, up[0]) if rx > 0 else up[0], min(ry, up[1]) if ry > 0 else up[1])
    return up, (final[0] // 8 * 8, final[1] // 8 * 8)


@dataclass(frozen=True)
class PromptBlend:
    """A second prompt mixed into the conditioning: (1 − weight) × the request's prompt + weight × this one
    (cross-attention states blended, as Deforum blends prompts between keyframes)."""

    prompt: str
    negative_prompt: str = ""
    weight: float = 0.5


class ControlMode(StrEnum):
    """sd-webui-controlnet's control modes: how a ControlNet unit's residuals weigh against the prompt."""

    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class ControlResize(StrEnum):
    """sd-webui-controlnet's resize modes: how a control image is fitted to the generation size."""

    JUST_RESIZE = "Just Resize"
    CROP_AND_RESIZE = "Crop and Resize"
    RESIZE_AND_FILL = "Resize and Fill"


@dataclass(frozen=True)
class ControlNetUnit:
    """One ControlNet unit (engine/controlnet): a `models/ControlNet` model guiding the UNet with a control image
    from `guidance_start` to `guidance_end` (fractions of the steps). `image` is the picture before the
    preprocessor `module` runs; None: the img2img or inpaint input image."""

    model: str
    module: str = "none"
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: ControlMode = ControlMode.BALANCED
    resize_mode: ControlResize = ControlResize.CROP_AND_RESIZE
    processor_res: int = 512
    threshold_a: float | None = None  # the module's first setting (canny: low threshold); None: its default
    threshold_b: float | None = None
    # sd-webui-controlnet's pixel perfect: the processor resolution from the control image and the size
    # (engine.controlnet.unit_text.pixel_perfect_resolution), replacing `processor_res` when the job runs
    pixel_perfect: bool = False
    image: Image.Image | None = field(default=None, compare=False)


@dataclass(frozen=True)
class GenerationRequest:
    """txt2img with A1111 options; also the shared settings of img2img and inpaint requests."""

    prompt: str
    negative_prompt: str = ""
    model: str | None = None
    sampler: str = DEFAULT_SAMPLER
    schedule: str = AUTOMATIC
    steps: int = DEFAULT_STEPS
    cfg_scale: float = DEFAULT_CFG_SCALE
    seed: int = -1
    width: int = DEFAULT_SIZE
    height: int = DEFAULT_SIZE
    batch_size: int = 1
    batch_count: int = 1
    clip_skip: int = 1
    tiling: bool = False
    variation_seed: int = -1
    variation_strength: float = 0.0
    hires: HiresFix | None = None
    blend: PromptBlend | None = None
    vae: str | None = None  # a `models/VAE` file's name; None: the checkpoint's own (A1111 "Automatic")
    # A1111's "resize seed from width/height": the noise made at this size and placed centred; 0: off.
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    eta: float | None = None  # the sampler's eta (ancestral / DDIM); None: the sampler's default
    eta_noise_seed_delta: int = 0  # A1111's ENSD: the sampler's step noise seeded by seed + this
    controlnet: tuple[ControlNetUnit, ...] = ()  # sd-webui-controlnet's units, in order
    # A1111's refiner: this checkpoint takes over the last pass's denoising once (999 − timestep) / 1000
    # reaches `refiner_switch_at` (engine.tasks.refiner); None: no refiner.
    refiner: str | None = None
    refiner_switch_at: float = DEFAULT_REFINER_SWITCH_AT
    # A1111's "Restore faces" (engine/faces): the restorer's name (GFPGAN, CodeFormer or a models/GFPGAN or
    # models/Codeformer file's stem), run on each decoded image; None: off.
    face_restorer: str | None = None
    code_former_weight: float = 0.5  # CodeFormer's fidelity weight (A1111's code_former_weight setting)
    # SD 3.5 and Flux (engine.tasks.flow): Flux dev's distilled guidance (Forge's `Distilled CFG Scale`) and
    # the flow-matching schedule's shift (`Shift`; on Flux a fixed shift instead of its size-dependent one).
    # None: the model's own.
    distilled_cfg_scale: float | None = None
    shift: float | None = None

    @property
    def params(self) -> GenerationRequest:
        """The generation parameters of any request: this one itself (img2img and inpaint hold theirs)."""
        return self


@dataclass(frozen=True)
class Img2ImgRequest:
    """img2img: `params` gives the prompt, size and sampler; `image` is the (already checked) input."""

    params: GenerationRequest
    image: Image.Image = field(compare=False)
    denoising_strength: float = 0.75
    resize_mode: ResizeMode = ResizeMode.JUST_RESIZE
    noise_multiplier: float = 1.0


@dataclass(frozen=True)
class InpaintRequest:
    """Inpaint upload: white pixels of `mask` are repainted, black ones kept."""

    params: GenerationRequest
    image: Image.Image = field(compare=False)
    mask: Image.Image = field(compare=False)
    denoising_strength: float = 0.75
    resize_mode: ResizeMode = ResizeMode.JUST_RESIZE
    mask_blur: int = 4
    masked_content: MaskedContent = MaskedContent.ORIGINAL
    inpaint_area: InpaintArea = InpaintArea.WHOLE_PICTURE
    padding: int = 32


Request = TypeVar("Request", GenerationRequest, Img2ImgRequest, InpaintRequest)


def with_params(request: Request, params: GenerationRequest) -> Request:
    """The same kind of request with other generation parameters (`request.params` reads them)."""
    if isinstance(request, GenerationRequest):
        return params  # type: ignore[return-value]
    return dataclasses.replace(request, params=params)


def with_fixed_seeds(request: Request) -> Request:
    """The request with its −1 seeds replaced by concrete ones (the variation seed only when it is used), so
    that running it again gives the same images. The queue does this when it accepts a job."""
    params = request.params
    varied = params.variation_strength > 0
    fixed = dataclasses.replace(
        params,
        seed=resolve_seed(params.seed),
        variation_seed=resolve_seed(params.variation_seed) if varied else params.variation_seed,
    )
    return with_params(request, fixed)


@dataclass(frozen=True)
class StepProgress:
    """One denoising step finished. `preview(i)` renders a cheap RGB approximation of image i of the batch
    being denoised, only when called."""

    phase: str  # "txt2img", "hires", "img2img", "inpaint"
    step: int
    total: int
    image_index: int  # the request's first image in the batch being denoised
    preview: Callable[..., Image.Image] | None = None
    preview_ready: bool = False  # the preview is a finished image (a training preview): always send it


@dataclass
class RunControl:
    """How a caller watches and stops a run: a per-step callback and a cancel flag checked between steps."""

    on_step: Callable[[StepProgress], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        return self.cancel.is_set()


@dataclass(frozen=True)
class GeneratedImage:
    image: Image.Image = field(compare=False)
    seed: int
    variation_seed: int | None
    infotext: str
    index: int  # position in the whole request (batch_count × batch_size)


@dataclass(frozen=True)
class GenerationResult:
    images: tuple[GeneratedImage, ...]
    model_name: str
    model_hash: str
    elapsed_s: float
    notes: tuple[str, ...] = ()  # what the run left out and why (a LoRA that does not fit the refiner)
