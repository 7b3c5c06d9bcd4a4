"""Animation speed on the demo model, in one run: `python bench/animate.py [--frames 12] [--size 64]`.

Seconds per frame of a 2D animation (cadence 1 and 3) and of interpolation, against one txt2img image of the
same size and steps (the baseline) measured in the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # `bench/queue.py` would hide the stdlib queue

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from config import load_settings  # noqa: E402
from engine.animation.animate import AnimationRenderer, AnimationSettings, frame_path  # noqa: E402
from engine.animation.video import write_videos  # noqa: E402
from engine.demo import DEMO_MODEL_NAME  # noqa: E402
from engine.requests import GenerationRequest  # noqa: E402
from engine.runner import Engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(load_settings(None, data_dir=folder, default_model=DEMO_MODEL_NAME))
        request = GenerationRequest(
            "a red circle", width=args.size, height=args.size, steps=args.steps, seed=1
        )
        engine.txt2img(request)  # warm up
        started = time.perf_counter()
        engine.txt2img(request)
        baseline = time.perf_counter() - started
        print(
            f"txt2img {args.size}×{args.size}, {args.steps} steps: {baseline * 1000:.0f} ms per image (baseline)"
        )
        common = dict(
            prompts={"0": "a red circle on a blue background", str(args.frames // 2): "a green star"},
            max_frames=args.frames,
            width=args.size,
            height=args.size,
            steps=args.steps,
            seed=1,
            zoom="0:(1.03)",
            translation_x="0:(2)",
        )
        runs = {
            "2D, cadence 1 (img2img at strength 0.65: 35 % of the steps)": AnimationSettings(**common),
            "2D, cadence 3": AnimationSettings(**common, diffusion_cadence=3),
            "interpolation (a full txt2img per frame)": AnimationSettings(
                **common, animation_mode="Interpolation"
            ),
        }
        for label, settings in runs.items():
            out = Path(folder) / label[:12].replace(" ", "_")
            renderer = AnimationRenderer(engine, settings, 1, out)
            started = time.perf_counter()
            for index in range(len(renderer.units)):
                renderer.render_unit(index)
            per_frame = (time.perf_counter() - started) / args.frames
            print(
                f"{label}: {per_frame * 1000:.0f} ms per frame, {per_frame / baseline:.2f}× a txt2img image"
            )
        from PIL import Image

        frames = [Image.open(frame_path(out, i)).convert("RGB") for i in range(args.frames)]
        started = time.perf_counter()
        write_videos(frames, Path(folder), "bench", 15, ["mp4", "gif", "webp"])
        print(f"MP4 + GIF + WebP of {args.frames} frames: {(time.perf_counter() - started) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
