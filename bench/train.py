"""Training speed on the demo model, in one run: `python bench/train.py [--steps 20] [--batch 2]`.

Seconds per optimizer step of each trainer (LoRA, LoRA with the text encoder, embedding, hypernetwork,
Dreambooth with and without prior preservation) on
the same images, against one denoising step of txt2img at the same size (the baseline) measured in the run.
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
from functools import partial  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from config import load_settings  # noqa: E402
from engine.demo import DEMO_MODEL_NAME  # noqa: E402
from engine.requests import GenerationRequest  # noqa: E402
from engine.runner import Engine  # noqa: E402
from engine.training.dreambooth import DreamboothOptions, train_dreambooth_slice  # noqa: E402
from engine.training.embedding import EmbeddingOptions, captions, train_embedding_slice  # noqa: E402
from engine.training.hypernetwork import HypernetworkTraining, train_hypernetwork_slice  # noqa: E402
from engine.training.loop import LoopOptions, encode_examples  # noqa: E402
from engine.training.lora import LoraOptions, train_lora_slice  # noqa: E402
from tools.demo_model.shapes import training_example  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(load_settings(None, data_dir=folder, default_model=DEMO_MODEL_NAME))
        model = engine.base_model(None)
        pairs = [training_example(seed) for seed in range(args.images)]
        examples = encode_examples(model, pairs, 64)
        named = encode_examples(
            model,
            [
                (image, text)
                for (image, _), text in zip(
                    pairs, captions("[name], [filewords]", "bench", [c for _, c in pairs]), strict=True
                )
            ],
            64,
        )
        steps = 20
        request = GenerationRequest(
            "a red circle", width=64, height=64, steps=steps, seed=1, batch_size=args.batch
        )
        engine.txt2img(request)  # warm up
        started = time.perf_counter()
        engine.txt2img(request)
        baseline = (time.perf_counter() - started) / steps
        print(f"txt2img, batch {args.batch}, 64×64: {baseline * 1000:.0f} ms per denoising step (baseline)")
        loop = LoopOptions(steps=args.steps, learning_rate="1e-3", batch_size=args.batch)
        runs = {
            "LoRA rank 4 (UNet)": (train_lora_slice, LoraOptions("b", loop, resolution=64), examples),
            "LoRA rank 4 (UNet + text encoder)": (
                train_lora_slice,
                LoraOptions("b", loop, resolution=64, train_text_encoder=True),
                examples,
            ),
            "embedding, 2 vectors": (
                train_embedding_slice,
                EmbeddingOptions("bench", loop, vectors=2, resolution=64),
                named,
            ),
            "hypernetwork 1,2,1": (
                train_hypernetwork_slice,
                HypernetworkTraining("b", loop, resolution=64),
                examples,
            ),
            "Dreambooth (whole UNet)": (
                train_dreambooth_slice,
                DreamboothOptions("b", loop, resolution=64),
                examples,
            ),
            "Dreambooth + prior preservation": (
                partial(train_dreambooth_slice, class_examples=examples[::-1]),
                DreamboothOptions("b", loop, class_prompt="a shape", resolution=64),
                examples,
            ),
        }
        for label, (train, options, data) in runs.items():
            with tempfile.TemporaryDirectory() as work:
                started = time.perf_counter()
                train(model, data, options, Path(work), lambda: False)
                per_step = (time.perf_counter() - started) / args.steps
            print(f"{label}: {per_step * 1000:.0f} ms per step, {per_step / baseline:.1f}× a denoising step")


if __name__ == "__main__":
    main()
