"""Deforum's frame operations, number for number: noise (uniform and Perlin), colour coherence (both colour-match
modes), contrast, and the order in which its 2D loop applies them.

Every pinned number was computed once with sd-webui-deforum's own functions (scripts/deforum_helpers/noise.py
`add_noise`, `rand_perlin_2d_octaves`; colors.py `maintain_colors`; at commit
322426851408ebca2cd49492bfeb1ec86e1dc869) in a throwaway environment outside the repository, with
opencv-python-headless 4.14.0, scikit-image 0.26.0, torch 2.13.0 (CPU) and numpy 2.4.6. The 2D-loop digests come
from render.py's lines for colour matching, contrast and noise (≈436–466 and 589–607 at that commit) run with those
functions and the fake diffusion step below.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.animate import (
    AnimationRenderer,
    AnimationSettings,
    frame_path,
    plan_frames,
    remake_frame,
)
from engine.animation.frame_noise import Perlin, add_noise, noise_image, perlin_problem
from engine.animation.frame_ops import adjust_contrast, match_colors
from engine.infotext import format_infotext, parse_infotext
from engine.infotext_files import read_infotext
from engine.requests import GeneratedImage, GenerationResult


def _sha(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(array)).tobytes()).hexdigest()


def test_noise_pulls_the_frame_towards_mid_grey():
    """Deforum: `cv2.addWeighted(sample, 1 − amount, noise, amount, 0)`. On flat grey 200 at amount 0.5 (512²,
    seed 42) its add_noise gives these means (≈ 0.5·200 + 0.5·127.2: the noise image, truncated to 8 bits, averages
    just under 127.5). The issue quoted 164.5; Deforum's own function gives 163.63 (uniform) and 163.49 (Perlin).
    Salon's old zero-mean noise gave 193.1 here (the issue measured 192.6)."""
    grey = Image.new("RGB", (512, 512), (200, 200, 200))
    assert np.asarray(add_noise(grey, 0.5, 42, "uniform")).mean() == 163.63287099202475
    assert np.asarray(add_noise(grey, 0.5, 42, "perlin")).mean() == 163.49456405639648
    assert add_noise(grey, 0, 42) is grey


@pytest.mark.parametrize(
    ("noise_type", "perlin", "digest", "corner", "inside"),
    [
        (
            "perlin",
            Perlin(),
            "51dfdb3d8afec9f60db3d1586ec890122b8dc3a7ca28f17725129a94aa06b7b5",
            [30, 4, 142],
            [181, 210, 170],
        ),
        (
            "uniform",
            Perlin(),
            "d9198fd892a7365606ff42020588150f3f8bb94ff328ce37f5edc4d70b81932e",
            [0, 0, 158],
            [231, 255, 211],
        ),
        (
            "perlin",
            Perlin(4, 2, 2, 0.7),
            "774c93236a21f25506b0146671c72dad1e50495dbb09a13c51220d400dfd81c6",
            [30, 4, 142],
            [183, 213, 172],
        ),
    ],
)
def test_the_noise_image_is_deforums(noise_type, perlin, digest, corner, inside):
    """Deforum's noise image for a 64×64 frame, seed 1 (its add_noise at amount 1 on black), blue first."""
    noise = noise_image(64, 64, 1, noise_type, perlin)
    assert noise[0, 0].tolist() == corner and noise[63, 17].tolist() == inside
    assert _sha(noise) == digest


def test_perlin_octaves_for_a_fixed_seed():
    """rand_perlin_2d_octaves((64, 64), (8, 8), 4, 0.5) after the white noise of seed 1: mean −0.01421, sd 0.32193."""
    import torch

    from engine.animation.frame_noise import _octaves

    generator = torch.Generator().manual_seed(1)
    torch.randn((3, 64, 64), generator=generator)
    octaves = _octaves(64, 64, Perlin(), generator)
    assert float(octaves.mean()) == pytest.approx(-0.014213903807103634, abs=1e-7)
    assert float(octaves.std()) == pytest.approx(0.32192811369895935, abs=1e-7)
    assert float(octaves[10, 20]) == -0.4025677442550659


def test_perlin_sizes_that_do_not_divide_are_refused_before_anything_runs():
    assert perlin_problem(512, 512, Perlin()) is None
    assert perlin_problem(96, 64, Perlin()) is None  # drawn at 64 × 64, stretched back to 96 wide
    message = perlin_problem(64, 192, Perlin(5, 8, 1, 0.5))
    assert message is not None and "perlin_w × 2^(octaves − 1) = 5" in message
    with pytest.raises(InvalidRequest, match="noise_type: Perlin noise needs the height"):
        plan_frames(AnimationSettings(width=64, height=192, perlin_w=5, perlin_octaves=1), 1)
    plan_frames(
        AnimationSettings(width=64, height=192, perlin_w=5, perlin_octaves=1, noise_type="uniform"), 1
    )


@pytest.mark.parametrize(
    ("mode", "digest", "pixels"),
    [
        (
            "RGB",
            "29c86f4251c0d400c40c9176596e3e856e6134cee796708c8dfff499d4c05d68",
            [[40, 110, 255], [56, 215, 30], [71, 143, 96]],
        ),
        (
            "LAB",
            "162c40019ef1ab6cedf291d719e5620884e46d6f6219af7f777825144475cd30",
            [[18, 97, 231], [70, 215, 26], [56, 145, 107]],
        ),
        (
            "HSV",
            "8ddb45b1a90c9fe51d38ada9606ffaec96858130e91aedb51106812c0a7cb8c8",
            [[43, 255, 36], [46, 188, 35], [73, 155, 73]],
        ),
    ],
)
def test_colour_matching_is_deforums(mode, digest, pixels):
    """maintain_colors(image, sample, mode) on two fixed 16×16 images (as Deforum calls it: BGR arrays into
    conversions named RGB→LAB/HSV), shown here in RGB: pixels (0, 0), (15, 15) and (7, 3)."""
    i, j = np.mgrid[0:16, 0:16]
    image = np.stack([(i * 13 + j * 7) % 256, (i * 5 + 90 + j * 3) % 256, (255 - i * 9 - j * 4) % 256], -1)
    sample = np.stack([(i * 3 + 40 + j * 2) % 256, (200 - i * 6 + j) % 256, (i * j + 30) % 256], -1)
    matched = np.asarray(
        match_colors(Image.fromarray(image.astype(np.uint8)), Image.fromarray(sample.astype(np.uint8)), mode)
    )
    assert [matched[0, 0].tolist(), matched[15, 15].tolist(), matched[7, 3].tolist()] == pixels
    assert _sha(matched) == digest


def test_contrast_rounds_half_to_even_in_double_precision():
    """Deforum: `(prev_img * contrast).round().astype(np.uint8)`; 5 × 0.9 = 4.5 → 4, 15 × 0.9 = 13.5 → 14."""
    image = Image.fromarray(np.array([[[5, 15, 255]]], dtype=np.uint8))
    assert np.asarray(adjust_contrast(image, 0.9)).tolist() == [[[4, 14, 230]]]
    assert np.asarray(adjust_contrast(image, 1.3)).tolist() == [[[6, 20, 255]]]  # Deforum would wrap past 255


# ----- the 2D loop, with a fake diffusion step ---------------------------------------------------------------


def _gradient(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64]
    base = np.stack([x * 3, y * 2 + 40, (x + y) * 1.5], -1) + rng.normal(0, 20, (64, 64, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _drift(rgb: np.ndarray, seed: int) -> np.ndarray:
    """The fake img2img: shifts the colours, so colour coherence has something to correct."""
    return np.clip(rgb.astype(np.float64) * 0.85 + np.array([30, 10, -5]) + seed % 7, 0, 255).astype(np.uint8)


class FakeEngine:
    def _result(self, image: np.ndarray, params) -> GenerationResult:
        text = format_infotext(
            params.prompt,
            params.negative_prompt,
            {"Steps": params.steps, "Seed": params.seed, "Size": "64x64"},
        )
        return GenerationResult(
            (GeneratedImage(Image.fromarray(image), params.seed, None, text, 0),), "m", "h", 0
        )

    def txt2img(self, params, control=None) -> GenerationResult:
        return self._result(_gradient(params.seed), params)

    def img2img(self, request, control=None) -> GenerationResult:
        return self._result(_drift(np.asarray(request.image), request.params.seed), request.params)


STRENGTH = (
    "0:(0.65), 2:(0.65), 3:(0), 4:(0.65)"  # frame 3 made afresh: legacy mode takes it as the new sample
)


def _render(folder: Path, **options) -> list[np.ndarray]:
    settings = AnimationSettings(
        prompts={"0": "x"},
        width=64,
        height=64,
        max_frames=6,
        seed=11,
        zoom="0:(1)",
        noise_schedule="0:(0.1)",
        contrast_schedule="0:(0.97)",
        strength_schedule=STRENGTH,
        **options,
    )
    renderer = AnimationRenderer(FakeEngine(), settings, 11, folder)
    for index in range(len(renderer.units)):
        renderer.render_unit(index)
    return [np.asarray(Image.open(frame_path(folder, frame)).convert("RGB")) for frame in range(6)]


@pytest.mark.parametrize(
    ("options", "digest"),
    [
        ({"color_coherence": "LAB"}, "eda7837be898b978759224df5a49b17dc1b5d6c4f161818b7e6831447b7b2cf1"),
        (
            {"color_coherence": "LAB", "legacy_colormatch": True, "noise_type": "uniform"},
            "70cabaf2f4933c313b7f43de4b8fb536ef578c00566b3091c1e82b9e78272d5b",
        ),
        (
            {"color_coherence": "HSV", "noise_type": "uniform"},
            "59a25e6205a0a8de23cdcd1efec8b751fe3534f88e1b2b17e80d659c9d7a1731",
        ),
    ],
)
def test_the_2d_loop_gives_deforums_frames(tmp_path, options, digest):
    """Six 64×64 frames, no camera move, through Deforum's colour match → contrast → noise → (fake) img2img →
    colour match again, with its colour sample kept as render.py keeps it in each mode."""
    assert _sha(np.stack(_render(tmp_path, **options))) == digest


def test_each_frame_says_how_its_colours_were_matched_and_is_made_again_from_that(tmp_path):
    frames = _render(tmp_path / "new", color_coherence="LAB")
    texts = [parse_infotext(read_infotext(frame_path(tmp_path / "new", f))).params for f in range(1, 6)]
    assert {t["Animation color match"] for t in texts} == {"before and after"}
    assert {t["Animation color reference"] for t in texts} == {"frame 0"}
    assert texts[0]["Animation noise type"] == "perlin" and texts[0]["Animation perlin"] == "8 8 4 0.5"
    text = read_infotext(frame_path(tmp_path / "new", 4))
    again = remake_frame(FakeEngine(), text, Image.fromarray(frames[3]), Image.fromarray(frames[0]))
    assert np.array_equal(np.asarray(again), frames[4])
    with pytest.raises(InvalidRequest, match="colour coherence LAB needs its reference, frame 0"):
        remake_frame(FakeEngine(), text, Image.fromarray(frames[3]))

    # Legacy: frame 1's moved frame is the sample (frame 1 itself unmatched) until frame 3, made at strength 0.
    legacy = _render(tmp_path / "legacy", color_coherence="LAB", legacy_colormatch=True)
    read = [parse_infotext(read_infotext(frame_path(tmp_path / "legacy", f))).params for f in range(1, 6)]
    assert [t["Animation color match"] for t in read] == ["none", "before", "before", "before", "before"]
    assert [t["Animation color reference"] for t in read] == ["frame 0 moved to frame 1"] * 3 + [
        "frame 3"
    ] * 2
    for frame, reference in ((2, legacy[0]), (5, legacy[3])):  # no camera move: frame 0 moved is frame 0
        text = read_infotext(frame_path(tmp_path / "legacy", frame))
        remade = remake_frame(
            FakeEngine(), text, Image.fromarray(legacy[frame - 1]), Image.fromarray(reference)
        )
        assert np.array_equal(np.asarray(remade), legacy[frame]), frame
