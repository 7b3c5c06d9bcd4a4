"""Raw options from a front end (CLI flags, slash-command options) to engine requests.

These only parse what a user typed: types, syntax (a size, a choice among labels, a prompt that would break
the infotext), input files checked from their header. Every parser raises `InvalidRequest` naming the option
and what is allowed; prompts are normalised so the infotext written with the image reads back exactly. The
limits (steps, sizes, batch, samplers…) are checked once, by the queue when the request is submitted
(`JobQueue.submit`, with `engine.validation.check_request`).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from PIL import Image, ImageDraw

from config import Limits
from core.errors import InvalidRequest
from engine.image_io import open_image_checked, parse_region
from engine.infotext import check_prompt, normalize_prompt
from engine.requests import (
    AUTOMATIC,
    DEFAULT_CFG_SCALE,
    DEFAULT_SAMPLER,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    GenerationRequest,
    HiresFix,
    HiresUpscaler,
    Img2ImgRequest,
    InpaintArea,
    InpaintRequest,
    MaskedContent,
    ResizeMode,
)
from engine.requests import hires_upscaler as hires_upscaler_of
from engine.validation import parse_size

E = TypeVar("E", bound=StrEnum)


def parse_choice(option: str, value: str | E, choices: type[E]) -> E:
    """An enum member by its label, case-insensitively, or an error listing the labels."""
    if isinstance(value, choices):
        return value
    folded = str(value).strip().casefold()
    for member in choices:
        if member.value.casefold() == folded:
            return member
    allowed = ", ".join(m.value for m in choices)
    raise InvalidRequest(option, f"{value!r} is not one of: {allowed}")


def generation_request(
    prompt: str,
    *,
    negative_prompt: str = "",
    model: str | None = None,
    sampler: str = DEFAULT_SAMPLER,
    schedule: str = AUTOMATIC,
    steps: int = DEFAULT_STEPS,
    cfg_scale: float = DEFAULT_CFG_SCALE,
    seed: int = -1,
    size: str | tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE),
    batch_size: int = 1,
    batch_count: int = 1,
    clip_skip: int = 1,
    tiling: bool = False,
    variation_seed: int = -1,
    variation_strength: float = 0.0,
    hires_scale: float | None = None,
    hires_steps: int = 0,
    hires_denoising_strength: float = 0.7,
    hires_upscaler: str = HiresUpscaler.LATENT.value,
) -> GenerationRequest:
    """A txt2img request (also the shared part of img2img and inpaint) from parsed options."""
    width, height = parse_size(size) if isinstance(size, str) else size
    prompt, negative_prompt = normalize_prompt(prompt), normalize_prompt(negative_prompt)
    check_prompt("prompt", prompt)
    check_prompt("negative_prompt", negative_prompt)
    hires = None
    if hires_scale is not None:
        upscaler = hires_upscaler_of(hires_upscaler)  # a model upscaler's name: the queue checks it
        hires = HiresFix(hires_scale, hires_steps, hires_denoising_strength, upscaler)
    return GenerationRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        model=model or None,
        sampler=sampler,
        schedule=schedule,
        steps=steps,
        cfg_scale=cfg_scale,
        seed=seed,
        width=width,
        height=height,
        batch_size=batch_size,
        batch_count=batch_count,
        clip_skip=clip_skip,
        tiling=tiling,
        variation_seed=variation_seed,
        variation_strength=variation_strength,
        hires=hires,
    )


def load_input_image(source: bytes | Path, limits: Limits, option: str = "image") -> Image.Image:
    """An uploaded or local input image, checked from its header before decoding."""
    return open_image_checked(
        source, max_pixels=limits.max_input_pixels, max_bytes=limits.max_upload_bytes, option=option
    )


def generation_info(data: bytes, limits: Limits, option: str = "image") -> str | None:
    """The A1111 infotext carried by an uploaded image (or another generator's, turned into one), checked
    by content and size first; only metadata is read, so any size of image that fits the limits will do."""
    import io
    import warnings

    from catalog.foreign import foreign_infotext
    from core.errors import InvalidImage
    from engine.image_io import sniff_format
    from engine.infotext_files import read_infotext_from_image

    if not data or len(data) > limits.max_upload_bytes:
        raise InvalidImage(option, f"the file must hold 1 to {limits.max_upload_bytes:,} bytes")
    if sniff_format(data) is None:
        raise InvalidImage(option, "is not a PNG, JPEG, WebP, GIF or BMP image (read from the content)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > limits.max_input_pixels:
                    raise InvalidImage(
                        option,
                        f"{image.width}x{image.height} is more than {limits.max_input_pixels:,} pixels",
                    )
                return foreign_infotext(dict(image.info), image.size) or read_infotext_from_image(image)
    except InvalidRequest:
        raise
    except Exception as error:  # Pillow raises many types on malformed files; all mean "unreadable"
        raise InvalidImage(option, f"cannot be read as an image ({type(error).__name__})") from None


MAX_CARRIED_TEXT = 1 << 20  # characters of a PNG's other text chunks an Extras result carries, all together
OWN_TEXTS = ("parameters", "postprocessing", "extras")  # written anew by the Extras result


def other_texts(data: bytes) -> dict[str, str]:
    """A PNG's text chunks (tEXt, zTXt, iTXt before its pixels) other than `OWN_TEXTS`: another program's
    record (ComfyUI's `prompt` and `workflow`, a `Software` line), which A1111's Extras copies into its
    result. Together at most MAX_CARRIED_TEXT characters (the later ones are left out); other formats: none.
    The data was checked by `generation_info` or `load_input_image` first."""
    import io

    from engine.image_io import sniff_format

    if sniff_format(data) != "PNG":
        return {}
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            chunks = dict(image.info)
    except Exception:  # Pillow raises many types on damage: nothing carried
        return {}
    carried: dict[str, str] = {}
    room = MAX_CARRIED_TEXT
    for key, value in chunks.items():
        if isinstance(key, str) and isinstance(value, str) and key not in OWN_TEXTS:
            if len(key) + len(value) > room:
                continue
            carried[key] = value
            room -= len(key) + len(value)
    return carried


def output_size_for(image: Image.Image) -> tuple[int, int]:
    """An input image's size rounded down to multiples of 8 (at least 64): img2img's default output size."""
    return max(64, image.width // 8 * 8), max(64, image.height // 8 * 8)


def img2img_request(
    params: GenerationRequest,
    image: Image.Image,
    *,
    denoising_strength: float = 0.75,
    resize_mode: str = ResizeMode.JUST_RESIZE.value,
    noise_multiplier: float = 1.0,
) -> Img2ImgRequest:
    return Img2ImgRequest(
        params,
        image,
        denoising_strength,
        parse_choice("resize_mode", resize_mode, ResizeMode),
        noise_multiplier,
    )


def region_mask(image: Image.Image, region: str) -> Image.Image:
    """A mask (white = repaint) covering the rectangle "x,y,w,h" of the image."""
    x, y, w, h = parse_region(region, image.width, image.height)
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).rectangle((x, y, x + w - 1, y + h - 1), fill=255)
    return mask


def inpaint_request(
    params: GenerationRequest,
    image: Image.Image,
    mask: Image.Image,
    *,
    denoising_strength: float = 0.75,
    resize_mode: str = ResizeMode.JUST_RESIZE.value,
    mask_blur: int = 4,
    masked_content: str = MaskedContent.ORIGINAL.value,
    inpaint_area: str = InpaintArea.WHOLE_PICTURE.value,
    padding: int = 32,
) -> InpaintRequest:
    return InpaintRequest(
        params,
        image,
        mask.convert("L"),
        denoising_strength,
        parse_choice("resize_mode", resize_mode, ResizeMode),
        mask_blur,
        parse_choice("masked_content", masked_content, MaskedContent),
        parse_choice("inpaint_area", inpaint_area, InpaintArea),
        padding,
    )
