"""The demo model's data set: coloured shapes on coloured backgrounds, drawn with Pillow, with captions.

Deterministic by seed. A scene has one or two shapes (circle, square, triangle, star) in a named colour, at
a named position (left/right/top/bottom/center) and size (small/large), on a named background colour.
Captions use a few phrasings, e.g. "a small red circle on the left, blue background" or "a red circle on a
blue background". Some single-shape combinations are held out of training for the evaluation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4× and downsample, for smooth edges

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 145, 30),
    "yellow": (240, 220, 50),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
SHAPES = ("circle", "square", "triangle", "star")
# Centre of the shape as a fraction of the image side.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.27, 0.5),
    "right": (0.73, 0.5),
    "top": (0.5, 0.27),
    "bottom": (0.5, 0.73),
    "center": (0.5, 0.5),
}
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
SIZES: dict[str, float] = {"small": 0.24, "large": 0.44}  # diameter as a fraction of the image side
PAIRED_POSITIONS = (("left", "right"), ("top", "bottom"))


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    position: str
    size: str

    def phrase(self, with_size: bool = True, with_position: bool = True) -> str:
        words = ([self.size] if with_size else []) + [self.colour, self.shape]
        if with_position:
            words.append(POSITION_PHRASES[self.position])
        return f"{article(words[0])} {' '.join(words)}"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class Scene:
    shapes: tuple[ShapeSpec, ...]
    background: str

    def caption(self, style: int = 0) -> str:
        """Caption in one of three phrasings (0: full with comma, 1: "on a … background", 2: short)."""
        if style == 2 and len(self.shapes) == 1:
            return f"{self.shapes[0].phrase(False, False)} on {article(self.background)} {self.background} background"
        things = " and ".join(s.phrase() for s in self.shapes)
        if style == 1:
            return f"{things} on {article(self.background)} {self.background} background"
        return f"{things}, {self.background} background"


def held_out(spec: ShapeSpec, background: str) -> bool:
    """About 1 in 32 single-shape combinations never appear in training (a fixed, hash-free rule)."""
    code = (
        list(COLOURS).index(spec.colour) * 7
        + SHAPES.index(spec.shape) * 5
        + list(POSITIONS).index(spec.position) * 3
        + list(SIZES).index(spec.size) * 11
        + list(COLOURS).index(background) * 13
    )
    return code % 32 == 5


def held_out_scenes() -> list[Scene]:
    """Every held-out single-shape scene, in a fixed order."""
    scenes = []
    for colour in COLOURS:
        for shape in SHAPES:
            for position in POSITIONS:
                for size in SIZES:
                    for background in COLOURS:
                        spec = ShapeSpec(shape, colour, position, size)
                        if background != colour and held_out(spec, background):
                            scenes.append(Scene((spec,), background))
    return scenes


def random_scene(rng: random.Random, two_shape_probability: float = 0.2) -> Scene:
    """A training scene (never a held-out combination)."""
    while True:
        background = rng.choice(list(COLOURS))
        colours = [c for c in COLOURS if c != background]
        if rng.random() < two_shape_probability:
            pair = rng.choice(PAIRED_POSITIONS)
            first, second = rng.sample(colours, 2)
            shapes = tuple(
                ShapeSpec(rng.choice(SHAPES), colour, position, rng.choice(list(SIZES)))
                for colour, position in zip((first, second), pair, strict=True)
            )
            return Scene(shapes, background)
        spec = ShapeSpec(
            rng.choice(SHAPES), rng.choice(colours), rng.choice(list(POSITIONS)), rng.choice(list(SIZES))
        )
        if not held_out(spec, background):
            return Scene((spec,), background)


def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners, r = 4, radius * math.sqrt(2) * 0.9
        start = math.pi / 4 + angle
    elif shape == "triangle":
        corners, r = 3, radius * 1.1
        start = -math.pi / 2 + angle
    else:
        raise ValueError(shape)
    return [
        (
            cx + r * math.cos(start + 2 * math.pi * k / corners),
            cy + r * math.sin(start + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def _star(cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        r = radius * 1.15 if k % 2 == 0 else radius * 0.48
        a = -math.pi / 2 + angle + math.pi * k / 5
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def render(scene: Scene, rng: random.Random | None = None, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw the scene; with `rng`, positions, sizes and angles are jittered a little (training variety)."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    for spec in scene.shapes:
        fx, fy = POSITIONS[spec.position]
        diameter = SIZES[spec.size]
        angle = 0.0
        if rng is not None:
            fx += rng.uniform(-0.04, 0.04)
            fy += rng.uniform(-0.04, 0.04)
            diameter *= rng.uniform(0.9, 1.1)
            angle = rng.uniform(-0.2, 0.2)
        cx, cy, radius = fx * big, fy * big, diameter * big / 2
        fill = COLOURS[spec.colour]
        if spec.shape == "circle":
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
        elif spec.shape == "star":
            draw.polygon(_star(cx, cy, radius, angle), fill=fill)
        else:
            draw.polygon(_polygon(spec.shape, cx, cy, radius, angle), fill=fill)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def training_example(seed: int) -> tuple[Image.Image, str]:
    """The training image and caption number `seed` (the same seed always gives the same pair)."""
    rng = random.Random(seed)
    scene = random_scene(rng)
    return render(scene, rng), scene.caption(rng.choice((0, 0, 1, 2)))
