"""Inpaint upload (A1111): repaint the white part of a mask, keep the rest pixel for pixel.

Steps as A1111: blur the mask; for "Only masked", cut the mask's box (plus padding, grown to the output's
aspect ratio) and work on it at the output size; prepare the masked content (fill, original, latent noise,
latent nothing); img2img where, after each step, the kept area is put back from the original; finally paste
the result over the original through the blurred mask, so unmasked pixels are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from engine.requests import InpaintArea, InpaintRequest, MaskedContent, ResizeMode, RunControl
from engine.tasks.img2img import img2img_latents
from engine.tasks.refiner import decoding_model
from engine.tasks.resize import (
    binary_latent_mask,
    blur_mask,
    composite_over,
    expand_to_aspect,
    fill_masked,
    mask_bounding_box,
    resize_image,
)
from engine.tasks.sampling import (
    KeepOriginal,
    Prepared,
    decode_latents,
    encode_images,
    latent_shape,
    seeded_noise,
)


@dataclass(frozen=True)
class InpaintCanvas:
    """The picture being worked on at the output size, its mask, and how to put results back."""

    image: Image.Image  # at output size, before masked-content changes
    mask: Image.Image  # blurred, at output size
    original: Image.Image  # what the final result is composited over
    overlay_mask: Image.Image  # blurred mask at the original's size
    box: tuple[int, int, int, int] | None  # where the work area sits in the original ("Only masked")


def prepare_canvas(request: InpaintRequest, width: int, height: int) -> InpaintCanvas:
    """Blur the mask and choose the work area (whole picture, or the masked box for "Only masked")."""
    image = request.image.convert("RGB")
    mask = request.mask.convert("L").resize(image.size, Image.Resampling.NEAREST)
    blurred = blur_mask(mask, request.mask_blur)
    box = (
        mask_bounding_box(blurred, request.padding)
        if request.inpaint_area is InpaintArea.ONLY_MASKED
        else None
    )
    if box is None:
        work_image = resize_image(request.resize_mode, image, width, height)
        work_mask = resize_image(request.resize_mode, blurred, width, height)
        return InpaintCanvas(work_image, work_mask, work_image, work_mask, None)
    box = expand_to_aspect(box, width, height, image.size)
    work_image = resize_image(ResizeMode.RESIZE_AND_FILL, image.crop(box), width, height)
    work_mask = resize_image(ResizeMode.RESIZE_AND_FILL, blurred.crop(box), width, height)
    return InpaintCanvas(work_image, work_mask, image, blurred, box)


def run_inpaint(
    prep: Prepared,
    request: InpaintRequest,
    seeds: Sequence[int],
    variation_seeds: Sequence[int] | None,
    control: RunControl,
    first_index: int,
) -> list[Image.Image]:
    """One batch of inpainting."""
    p, model = prep.params, prep.model
    # 1. Work area and masked content.
    canvas = prepare_canvas(request, p.width, p.height)
    start = (
        fill_masked(canvas.image, canvas.mask)
        if request.masked_content is MaskedContent.FILL
        else canvas.image
    )
    init_latents = encode_images(model, [start])
    shape = latent_shape(model, p.width, p.height)
    repaint = torch.from_numpy(binary_latent_mask(canvas.mask, (shape[2], shape[1])))[None, None].to(
        model.device
    )
    # 2. Noise per image; "latent noise" / "latent nothing" replace the masked latents before sampling.
    generators, noise = seeded_noise(prep, seeds, variation_seeds, p.width, p.height)
    init_latents = init_latents.expand(len(seeds), -1, -1, -1)
    if request.masked_content is MaskedContent.LATENT_NOISE:
        init_latents = init_latents * (1 - repaint) + noise * repaint
    elif request.masked_content is MaskedContent.LATENT_NOTHING:
        init_latents = init_latents * (1 - repaint)
    # 3. Denoise: inpainting models see the mask and masked image; others get the kept area put back.
    keep, extra = None, None
    if model.inpainting:
        extra = _inpainting_channels(prep, canvas, repaint, len(seeds))
    else:
        keep = KeepOriginal(init_latents, noise, 1.0 - repaint)
    latents = img2img_latents(
        prep,
        init_latents,
        noise,
        generators,
        request.denoising_strength,
        p.steps,
        control,
        phase="inpaint",
        first_index=first_index,
        size=(p.width, p.height),
        keep=keep,
        extra_channels=extra,
    )
    # 4. Decode and paste over the original through the blurred mask.
    return [_paste_back(canvas, image) for image in decode_latents(decoding_model(prep), latents)]


def _inpainting_channels(
    prep: Prepared, canvas: InpaintCanvas, repaint: torch.Tensor, batch: int
) -> torch.Tensor:
    """The 5 extra UNet input channels of inpainting checkpoints: the mask and the latents of the kept image."""
    hard_mask = canvas.mask.point(lambda v: 255 if v >= 128 else 0)
    kept = Image.composite(Image.new("RGB", canvas.image.size, (127, 127, 127)), canvas.image, hard_mask)
    masked_latents = encode_images(prep.model, [kept])
    return torch.cat([repaint, masked_latents], dim=1).expand(batch, -1, -1, -1)


def _paste_back(canvas: InpaintCanvas, generated: Image.Image) -> Image.Image:
    if canvas.box is None:
        return composite_over(canvas.original, generated, canvas.overlay_mask)
    x1, y1, x2, y2 = canvas.box
    placed = canvas.original.copy()
    placed.paste(generated.resize((x2 - x1, y2 - y1), Image.Resampling.LANCZOS), (x1, y1))
    return composite_over(canvas.original, placed, canvas.overlay_mask)
