"""How fast is `salon imagine` on the demo model, against plain diffusers on the same model, in one run.

    python bench/demo_imagine.py [--steps 20] [--repeats 5]

Prints one line per figure: seconds per 64×64 image for the diffusers StableDiffusionPipeline (baseline)
and for Salon's engine (same sampler, steps and CFG), their ratio, and the cold start of a whole
`salon imagine` process (imports, model load, one image) for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder would come first on sys.path, and its queue.py would hide the standard
# library's `queue` (which torch imports): look for modules from the repository root instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
PROMPT = "a red circle on a blue background"


def best_of(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from config import load_settings
    from engine.demo import DEMO_MODEL_DIR
    from engine.requests import GenerationRequest
    from engine.runner import Engine

    torch.set_num_threads(os.cpu_count() or 1)
    pipe = StableDiffusionPipeline.from_pretrained(
        DEMO_MODEL_DIR, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.set_progress_bar_config(disable=True)

    def plain() -> None:
        pipe(
            PROMPT,
            num_inference_steps=args.steps,
            guidance_scale=7.0,
            width=64,
            height=64,
            generator=torch.Generator().manual_seed(1),
        )

    with tempfile.TemporaryDirectory() as data:
        engine = Engine(load_settings(None, data_dir=data))
        request = GenerationRequest(PROMPT, steps=args.steps, width=64, height=64, seed=1)
        engine.txt2img(request)  # load the model once, as the bot does

        def salon() -> None:
            engine.txt2img(request)

        plain()
        base_best, base_median = best_of(plain, args.repeats)
        salon_best, salon_median = best_of(salon, args.repeats)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "imagine",
                PROMPT,
                "--steps",
                str(args.steps),
                "--size",
                "64x64",
                "--seed",
                "1",
                "-o",
                str(Path(data) / "out"),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "SALON_DATA_DIR": data},
        )
        cold = time.perf_counter() - started
    print(
        f"baseline diffusers pipeline, {args.steps} steps 64x64: {base_best:.3f}s best, {base_median:.3f}s median"
    )
    print(f"salon engine, same request:                {salon_best:.3f}s best, {salon_median:.3f}s median")
    print(f"ratio salon / baseline (best):             {salon_best / base_best:.2f}")
    print(f"cold `salon imagine` process (imports, load, one image): {cold:.2f}s")


if __name__ == "__main__":
    main()
