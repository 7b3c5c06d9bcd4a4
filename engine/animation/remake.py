"""A diffused 2D animation frame made again from its PNG infotext: the infotext of each frame records what the
animation did to the previous frame (the exact camera move, colour match, contrast, noise and noise multiplier),
so with the previous diffused frame (and the colour reference it names) the frame comes out again."""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.frame_noise import Perlin, add_noise
from engine.animation.frame_ops import adjust_contrast, match_colors, warp
from engine.infotext import parse_infotext
from engine.requests import GenerationRequest, Img2ImgRequest, PromptBlend


def remake_frame(
    engine, infotext: str, previous: Image.Image, reference: Image.Image | None = None
) -> Image.Image:
    """A diffused 2D frame made again from its infotext and the previous diffused frame (and the colour
    reference its infotext names, when colour coherence was on): the same move, colours, noise and img2img."""
    info = parse_infotext(infotext)
    p = info.params
    if "Animation 3D camera" in p:
        raise InvalidRequest(
            "infotext", "a 3D animation frame cannot be remade: its move needs the depth model"
        )
    if "Animation motion" not in p:
        raise InvalidRequest("infotext", "this is not a diffused animation frame after the first")
    numbers = [float(v) for v in p["Animation motion"].split()]
    matrix = np.array([numbers[:3], numbers[3:6], [0.0, 0.0, 1.0]])
    moved = warp(previous, matrix, p.get("Animation border", "replicate"))
    coherence = p.get("Animation color coherence", "None")
    when = p.get("Animation color match", "before") if coherence != "None" else "none"
    if when != "none" and reference is None:
        named = p.get("Animation color reference", "frame 0")
        raise InvalidRequest("reference", f"colour coherence {coherence} needs its reference, {named}")
    if when.startswith("before"):
        moved = match_colors(moved, reference, coherence)
    seed = int(p["Seed"])
    perlin = Perlin(
        *(float(v) if "." in v else int(v) for v in p.get("Animation perlin", "8 8 4 0.5").split())
    )
    noise_type = p.get("Animation noise type", "perlin")
    moved = add_noise(
        adjust_contrast(moved, float(p["Animation contrast"])),
        float(p["Animation noise"]),
        seed,
        noise_type,
        perlin,
    )
    width, height = info.size or (512, 512)
    blend_weight = float(p.get("Blend weight", 0) or 0)
    params = GenerationRequest(
        info.prompt,
        info.negative_prompt,
        model=info.model,
        sampler=p.get("Sampler", "Euler a"),
        schedule=info.schedule_type,
        steps=info.steps or 20,
        cfg_scale=info.cfg_scale or 7.0,
        seed=seed,
        width=width,
        height=height,
        blend=PromptBlend(p["Blend prompt"], p.get("Blend negative prompt", ""), blend_weight)
        if blend_weight
        else None,
    )
    strength = info.denoising_strength if info.denoising_strength is not None else 0.35
    multiplier = float(p.get("Noise multiplier", 1))
    request = Img2ImgRequest(params, moved, denoising_strength=strength, noise_multiplier=multiplier)
    image = engine.img2img(request).images[0].image
    return match_colors(image, reference, coherence) if when.endswith("after") else image
