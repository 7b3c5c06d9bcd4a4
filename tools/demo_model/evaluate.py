"""Measure from the pixels how well the demo model follows its prompts: `python -m tools.demo_model.evaluate`.

For every held-out caption (combinations never seen in training) and a few fixed seeds it generates an
image and reads back, from the pixels alone, the background colour (border pixels), the shape's colour
(pixels that differ from the background), its position (their centroid) and its shape (how much of its
bounding box and of its convex hull it fills). It also checks that img2img at strength 0.3 keeps an
image's colours and layout, and that inpainting the half with the shape changes that half towards a new
prompt while the other half stays. The same analysis applied to the data set's own drawings is a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tools.demo_model.shapes import COLOURS, POSITIONS, Scene, ShapeSpec, held_out_scenes

PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
NAMES = list(COLOURS)
FOREGROUND_DISTANCE = 60.0  # RGB distance from the background colour above which a pixel is "shape"
MIN_SHAPE_PIXELS = 6


@dataclass(frozen=True)
class Reading:
    """What the pixels of an image say: background and, if a shape was found, its colour, position, shape."""

    background: str
    colour: str | None
    position: str | None
    shape: str | None


def nearest_colour(rgb: np.ndarray) -> str:
    return NAMES[int(np.argmin(np.linalg.norm(PALETTE - rgb, axis=1)))]


def _border(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            pixels[:2].reshape(-1, 3),
            pixels[-2:].reshape(-1, 3),
            pixels[:, :2].reshape(-1, 3),
            pixels[:, -2:].reshape(-1, 3),
        ]
    )


def _erode(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of pixel squares (monotone chain over the pixels' corners)."""
    corners = np.concatenate([points + offset for offset in ((0, 0), (0, 1), (1, 0), (1, 1))])
    pts = sorted(set(map(tuple, corners.tolist())))
    if len(pts) < 3:
        return float(len(points))

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    xs, ys = np.array([p[0] for p in hull]), np.array([p[1] for p in hull])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def classify_shape(mask: np.ndarray) -> str:
    """circle / square / triangle / star from how much of its convex hull and of its enclosing circle it fills.

    On the data set's own drawings (any size, position jitter and rotation) the two measures separate the
    shapes with a margin: stars fill 0.53–0.62 of their hull (others ≥ 0.82); of the circle through their
    farthest pixel, circles fill 0.86–0.95, squares 0.58–0.70, triangles 0.40–0.50.
    """
    ys, xs = np.nonzero(mask)
    area = float(len(xs))
    solidity = area / _hull_area(np.stack([ys, xs], axis=1))
    radius = float(np.sqrt(((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max())) + 0.5
    roundness = area / (np.pi * radius * radius)
    if solidity < 0.75:
        return "star"
    if roundness > 0.78:
        return "circle"
    if roundness > 0.54:
        return "square"
    return "triangle"


def read_image(image: Image.Image) -> Reading:
    """Background colour, and the colour, position and shape of what differs from it."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    background = nearest_colour(np.median(_border(pixels), axis=0))
    distance = np.linalg.norm(pixels - PALETTE[NAMES.index(background)], axis=2)
    mask = distance > FOREGROUND_DISTANCE
    if mask.sum() < MIN_SHAPE_PIXELS:
        return Reading(background, None, None, None)
    core = _erode(mask)
    colour = nearest_colour(np.median(pixels[core if core.sum() >= 3 else mask], axis=0))
    ys, xs = np.nonzero(mask)
    side = pixels.shape[0]
    centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5]) / side
    position = min(POSITIONS, key=lambda p: float(np.linalg.norm(centre - np.array(POSITIONS[p]))))
    return Reading(background, colour, position, classify_shape(mask))


def score(reading: Reading, scene: Scene) -> dict[str, bool]:
    spec = scene.shapes[0]
    return {
        "background colour": reading.background == scene.background,
        "shape colour": reading.colour == spec.colour,
        "position": reading.position == spec.position,
        "shape": reading.shape == spec.shape,
    }


# ----- running the model ----------------------------------------------------------------------------------------
def _engine(model_dir: Path, workdir: Path):
    from config import load_settings
    from engine.runner import Engine

    checkpoints = workdir / "models" / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    (checkpoints / model_dir.name).symlink_to(model_dir.resolve(), target_is_directory=True)
    return Engine(load_settings(None, data_dir=workdir, default_model=model_dir.name))


def _request(prompt: str, seed: int, args: argparse.Namespace):
    from engine.requests import GenerationRequest

    return GenerationRequest(
        prompt=prompt,
        seed=seed,
        steps=args.steps,
        cfg_scale=args.cfg,
        sampler=args.sampler,
        width=64,
        height=64,
    )


def evaluate_prompts(engine, scenes: list[Scene], seeds: list[int], args) -> tuple[dict[str, float], list]:
    totals: dict[str, int] = {}
    images = []
    for scene in scenes:
        prompt = scene.caption(0)
        for seed in seeds:
            image = engine.txt2img(_request(prompt, seed, args)).images[0].image
            images.append((scene, seed, image))
            for key, ok in score(read_image(image), scene).items():
                totals[key] = totals.get(key, 0) + int(ok)
    count = len(scenes) * len(seeds)
    return {key: value / count for key, value in totals.items()}, images


def evaluate_img2img(engine, generated: list, args) -> float:
    """Share of images whose background, shape colour and position survive img2img at strength 0.3."""
    from engine.requests import Img2ImgRequest

    kept = 0
    for scene, seed, image in generated:
        before = read_image(image)
        request = Img2ImgRequest(_request(scene.caption(0), seed + 1, args), image, denoising_strength=0.3)
        after = read_image(engine.img2img(request).images[0].image)
        kept += (before.background, before.colour, before.position) == (
            after.background,
            after.colour,
            after.position,
        )
    return kept / len(generated)


def evaluate_inpaint(engine, args, count: int) -> dict[str, float]:
    """Repaint the left half (with the shape) as a shape of another colour; the right half must not change."""
    from engine.requests import InpaintRequest

    towards, unchanged = 0, 0
    pairs = [(c, n) for c in NAMES for n in NAMES if c != n][:count]
    for i, (old, new) in enumerate(pairs):
        background = next(b for b in NAMES if b not in (old, new))
        prompt = Scene((ShapeSpec("circle", old, "left", "large"),), background).caption(0)
        image = engine.txt2img(_request(prompt, 1000 + i, args)).images[0].image
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (0, 0, 32, 64))
        new_prompt = Scene((ShapeSpec("circle", new, "left", "large"),), background).caption(0)
        inpaint = InpaintRequest(
            _request(new_prompt, 2000 + i, args), image, mask, denoising_strength=0.9, mask_blur=2
        )
        result = engine.inpaint(inpaint).images[0].image
        left = read_image(_left_half_on(result, background))
        towards += left.colour == new
        unchanged += bool(np.array_equal(np.asarray(result)[:, 40:], np.asarray(image)[:, 40:]))
    return {
        "inpaint repaints towards the prompt": towards / len(pairs),
        "inpaint keeps the other half": unchanged / len(pairs),
    }


def _left_half_on(image: Image.Image, background: str) -> Image.Image:
    canvas = Image.new("RGB", image.size, COLOURS[background])
    canvas.paste(image.crop((0, 0, 32, 64)), (0, 0))
    return canvas


def main(argv: list[str] | None = None) -> None:
    from engine.demo import DEMO_MODEL_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEMO_MODEL_DIR, help="diffusers folder of the model")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per held-out caption")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--sampler", default="DPM++ 2M")
    parser.add_argument("--quick", action="store_true", help="txt2img only (no img2img/inpaint checks)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--grid", type=Path, help="save a grid of the generated images here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    scenes = held_out_scenes()
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        engine = _engine(args.model, Path(workdir))
        figures, generated = evaluate_prompts(engine, scenes, seeds, args)
        if not args.quick:
            figures["img2img 0.3 keeps colours and layout"] = evaluate_img2img(engine, generated[::4], args)
            figures.update(evaluate_inpaint(engine, args, count=16))
    print(
        f"{len(scenes)} held-out captions × {len(seeds)} seeds, {args.steps} steps, {args.sampler}, CFG {args.cfg}"
    )
    for key, value in figures.items():
        print(f"{key:40s} {value:6.1%}")
    print(f"({time.perf_counter() - started:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.grid:
        _save_grid([image for _, _, image in generated], args.grid)


def _save_grid(images: list[Image.Image], path: Path, columns: int = 16) -> None:
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * 64, rows * 64), (128, 128, 128))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * 64, (i // columns) * 64))
    grid.save(path)


if __name__ == "__main__":
    main()
