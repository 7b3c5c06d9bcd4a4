"""Engine speed on one card, in one run: `python bench/engine_gpu.py` (a GPU) or `--tiny` (any CPU).

Builds SD 1.5- and SDXL-architecture models with random weights from the configs Salon ships
(engine/configs; nothing is downloaded), saves them as diffusers folders and prints, on the same device:
plain diffusers (the baseline) against Salon's engine per image at batch 1, images/s at batch 4/8/16, the
warm-up time, and the UNet's TFLOP/s against a dense half-precision matmul peak measured in the same run.
Optional (--extras): step caching and token merging, each with its speed-up and its mean pixel difference
to the exact result. Stages run most important first and stop when --budget seconds are spent, so the
output of a run cut short still holds the headline figures.

`--tiny` shrinks both architectures (same block types, 4 resolution levels, VAE factor 8) to run at 128×128
on a CPU in a few minutes; its figures say the bench works, not how fast a GPU is.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from config import load_settings  # noqa: E402
from engine.configs import CLIP_TOKENIZER, SD15_CONFIG, SDXL_CONFIG  # noqa: E402
from engine.requests import GenerationRequest  # noqa: E402
from engine.runner import Engine  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed, sharp focus"
NEGATIVE = "blurry, low quality"
STARTED = time.perf_counter()


def say(line: str) -> None:
    print(line, flush=True)


def elapsed() -> float:
    return time.perf_counter() - STARTED


# ----- models ------------------------------------------------------------------------------------------------
def _tiny_unet(config: dict, sdxl: bool) -> dict:
    config = dict(config)
    config.update(
        block_out_channels=[32, 64, 64, 64] if not sdxl else [32, 64, 64],
        layers_per_block=1,
        attention_head_dim=[2, 4, 4, 4] if not sdxl else [2, 4, 4],
        cross_attention_dim=64 if not sdxl else 128,
        norm_num_groups=8,
    )
    if sdxl:
        config.update(transformer_layers_per_block=[1, 1, 1], addition_time_embed_dim=8)
        config["projection_class_embeddings_input_dim"] = 64 + 6 * 8  # pooled clip_g width + 6 size ids
    return config


def _tiny_vae(config: dict) -> dict:
    return {**config, "block_out_channels": [16, 32, 32, 32], "layers_per_block": 1, "norm_num_groups": 8}


def _tiny_text(config, hidden: int, projection: int | None = None):
    config.hidden_size, config.intermediate_size = hidden, hidden * 2
    config.num_hidden_layers, config.num_attention_heads = 2, 2
    if projection:
        config.projection_dim = projection
    return config


def build_model(kind: str, folder: Path, tiny: bool, device: torch.device) -> Path:
    """A diffusers folder of `kind` ("sd15" or "sdxl") with random weights, in float16 (float32 on a CPU)."""
    from diffusers import (
        AutoencoderKL,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from diffusers.schedulers import EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    sdxl = kind == "sdxl"
    source = SDXL_CONFIG if sdxl else SD15_CONFIG
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet_config = UNet2DConditionModel.load_config(source / "unet")
    vae_config = AutoencoderKL.load_config(source / "vae")
    text_config = CLIPTextConfig.from_pretrained(source / "text_encoder")
    if tiny:
        unet_config, vae_config = _tiny_unet(unet_config, sdxl), _tiny_vae(vae_config)
        text_config = _tiny_text(text_config, 64)
    torch.manual_seed(0)
    with torch.device(device):  # random initialisation on the GPU: seconds instead of minutes on the CPU
        parts = {
            "unet": UNet2DConditionModel.from_config(unet_config),
            "vae": AutoencoderKL.from_config(vae_config),
            "text_encoder": CLIPTextModel(text_config),
        }
        if sdxl:
            text2 = CLIPTextConfig.from_pretrained(source / "text_encoder_2")
            if tiny:
                text2 = _tiny_text(text2, 64, projection=64)
            parts["text_encoder_2"] = CLIPTextModelWithProjection(text2)
    parts = {name: module.to(dtype) for name, module in parts.items()}
    scheduler = EulerDiscreteScheduler.from_pretrained(source / "scheduler")
    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER)
    if sdxl:
        pipe = StableDiffusionXLPipeline(
            **parts,
            tokenizer=tokenizer,
            tokenizer_2=CLIPTokenizer.from_pretrained(CLIP_TOKENIZER),
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionPipeline(
            **parts,
            tokenizer=tokenizer,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# ----- measurements ------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` calls (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        sync(device)
        began = time.perf_counter()
        function()
        sync(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def matmul_peak(device: torch.device) -> float:
    """Dense half-precision matmul TFLOP/s measured now (float32 on a CPU): the card's practical peak."""
    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    seconds = timed(lambda: a @ b, device, 10 if device.type == "cuda" else 3)
    return 2 * n**3 / seconds / 1e12


def plain_pipeline(folder: Path, sdxl: bool, device: torch.device):
    """diffusers' own pipeline as a user would run it: half precision, SDPA, DPM++ 2M Karras."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    cls = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    extra = {} if sdxl else {"safety_checker": None, "requires_safety_checker": False}
    pipe = cls.from_pretrained(folder, dtype=dtype, local_files_only=True, **extra).to(device)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_plain(pipe, size: int, steps: int, batch: int):
    return pipe(
        PROMPT,
        negative_prompt=NEGATIVE,
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=7.0,
        num_images_per_prompt=batch,
        output_type="np",
    )


def salon_request(size: int, steps: int, batch: int, seed: int = 1) -> GenerationRequest:
    return GenerationRequest(
        PROMPT,
        negative_prompt=NEGATIVE,
        width=size,
        height=size,
        steps=steps,
        cfg_scale=7.0,
        sampler="DPM++ 2M",
        schedule="Karras",
        seed=seed,
        batch_size=batch,
    )


def unet_flops(engine: Engine, size: int) -> float:
    """FLOPs of one UNet call for one guided image (2 rows), counted by torch on an eager forward."""
    from torch.utils.flop_counter import FlopCounterMode

    from engine.speed.fast_path import dummy_unet_inputs

    model = engine.load(None)
    sample, states, added = dummy_unet_inputs(model.unet, 2, size, size, 77, model.vae_scale_factor)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.unet(
            sample,
            torch.tensor(500.0, device=model.device),
            encoder_hidden_states=states,
            added_cond_kwargs=added,
        )
    return float(counter.get_total_flops())


def unet_seconds(engine: Engine, size: int, images: int, device: torch.device) -> float:
    """Seconds of one UNet call on Salon's path (compiled where warm) for `images` guided images."""
    from engine.speed.fast_path import dummy_unet_inputs

    model = engine.load(None)
    sample, states, added = dummy_unet_inputs(model.unet, 2 * images, size, size, 77, model.vae_scale_factor)
    t = torch.tensor(500.0, device=model.device)

    def call():
        if model.fast is not None:
            return model.fast.unet(sample, t, states, added)
        with torch.no_grad():
            return model.unet(sample, t, encoder_hidden_states=states, added_cond_kwargs=added).sample

    call()
    return timed(call, device, 10 if device.type == "cuda" else 3)


# ----- one architecture --------------------------------------------------------------------------------------
def bench_model(kind: str, args, device: torch.device, peak: float, work: Path) -> None:
    sdxl = kind == "sdxl"
    size = (128 if args.tiny else 1024) if sdxl else (128 if args.tiny else 512)
    batches = [b for b in args.batches if not sdxl or b <= args.sdxl_max_batch]
    say(
        f"\n## {'SDXL' if sdxl else 'SD 1.5'} architecture{' (tiny)' if args.tiny else ''}: {size}×{size}, "
        f"{args.steps} steps, DPM++ 2M Karras, CFG 7"
    )
    began = time.perf_counter()
    data = work / kind
    folder = build_model(kind, data / "models" / "Stable-diffusion" / f"bench-{kind}", args.tiny, device)
    say(f"random weights built and saved in {time.perf_counter() - began:.0f}s")

    # Plain diffusers: the baseline.
    pipe = plain_pipeline(folder, sdxl, device)
    run_plain(pipe, size, args.steps, 1)
    plain_one = timed(lambda: run_plain(pipe, size, args.steps, 1), device, args.repeats)
    say(f"plain diffusers, batch 1: {plain_one:.3f} s per image (baseline)")
    plain_rate = {}
    for batch in batches:
        if batch == 1 or elapsed() > args.budget:
            continue
        run_plain(pipe, size, args.steps, batch)
        plain_rate[batch] = batch / timed(lambda b=batch: run_plain(pipe, size, args.steps, b), device, 2)
        say(f"plain diffusers, batch {batch}: {plain_rate[batch]:.2f} images/s")
    pipe = None  # free its memory before Salon loads the same weights
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # Salon's engine in the chosen speed mode.
    speed = {"mode": args.mode, "sizes": [f"{size}x{size}"], "batches": batches, "compiler": args.compiler}
    settings = load_settings(
        None,
        data_dir=data,
        default_model=f"bench-{kind}",
        limits={"max_batch_size": max(batches)},
        speed=speed,
    )
    engine = Engine(settings)
    warm = engine.warm_up()
    fast = engine.load(None).fast
    if engine.speed_mode == "max":
        say(
            f"Salon (max) warm-up: {warm:.1f}s for {len(batches)} batch buckets × 2 prompt lengths + VAE decoder "
            f"(compile cache: {settings.compile_cache_dir})"
        )
    else:
        say(f"Salon ({engine.speed_mode}): nothing to compile, no warm-up")
    engine.txt2img(salon_request(size, args.steps, 1))
    salon_one = timed(lambda: engine.txt2img(salon_request(size, args.steps, 1)), device, args.repeats)
    say(f"Salon, batch 1: {salon_one:.3f} s per image = {plain_one / salon_one:.2f}× plain diffusers")
    for batch in batches:
        if batch == 1:
            continue
        if elapsed() > args.budget:
            say(f"(budget of {args.budget:.0f}s spent: larger batches skipped)")
            break
        engine.txt2img(salon_request(size, args.steps, batch))
        rate = batch / timed(lambda b=batch: engine.txt2img(salon_request(size, args.steps, b)), device, 2)
        versus = f" = {rate / plain_rate[batch]:.2f}× plain" if batch in plain_rate else ""
        say(f"Salon, batch {batch}: {rate:.2f} images/s{versus}")
    if fast is not None:
        say(f"Salon UNet calls: {dict(fast.calls)}")

    flops = unet_flops(engine, size)
    for images in sorted({1, max(batches)}):
        seconds = unet_seconds(engine, size, images, device)
        tflops = flops * images / seconds / 1e12
        say(
            f"Salon UNet, {images} image(s) per call: {seconds * 1000:.1f} ms = {tflops:.3g} TFLOP/s "
            f"= {100 * tflops / peak:.0f} % of the measured matmul peak ({flops / 1e9:.3g} GFLOP per image-step)"
        )
    per_image = flops * args.steps / 1e12  # one guided call per step
    say(
        f"UNet work per image: {per_image:.3g} TFLOP; at the measured peak that is {1000 * per_image / peak:.0f} ms "
        "(the physical limit, VAE and text encoders aside)"
    )
    if args.extras and elapsed() < args.budget:
        bench_extras(engine, size, args, device, salon_one)


def bench_extras(engine: Engine, size: int, args, device: torch.device, exact_s: float) -> None:
    """Step caching and token merging, each on an engine of its own (both change what is compiled): speed-up
    against the exact path at batch 1, and the mean pixel difference to the exact images (4 seeds)."""
    exact = [
        np.asarray(i.image, dtype=np.float32)
        for i in engine.txt2img(salon_request(size, args.steps, 4)).images
    ]
    for label, option, value in (
        ("step cache, interval 3", "step_cache_interval", 3),
        ("token merging, ratio 0.5", "token_merging_ratio", 0.5),
    ):
        if elapsed() > args.budget:
            say(f"(budget of {args.budget:.0f}s spent: {label} skipped)")
            continue
        speed = {**engine.settings.speed.model_dump(), option: value}
        other = Engine(engine.settings.model_copy(update={"speed": type(engine.settings.speed)(**speed)}))
        warm = other.warm_up()
        other.txt2img(salon_request(size, args.steps, 1))
        seconds = timed(lambda e=other: e.txt2img(salon_request(size, args.steps, 1)), device, args.repeats)
        images = other.txt2img(salon_request(size, args.steps, 4)).images
        diff = statistics.mean(
            float(np.abs(np.asarray(i.image, dtype=np.float32) - e).mean())
            for i, e in zip(images, exact, strict=True)
        )
        say(
            f"{label}: {seconds:.3f} s per image = {exact_s / seconds:.2f}× the exact path "
            f"(warm-up {warm:.0f}s); mean pixel difference {diff:.2f} of 255"
        )
        del other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small models at 128×128 (runs on a CPU)")
    parser.add_argument("--models", default="sd15,sdxl", help="sd15, sdxl or both")
    parser.add_argument("--batches", default="1,4,8,16", help="batch buckets to measure")
    parser.add_argument("--sdxl-max-batch", type=int, default=4, help="largest SDXL batch (time budget)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", default="max", choices=["max", "balanced", "off"])
    parser.add_argument("--compiler", default="inductor", help="torch.compile backend for mode max")
    parser.add_argument("--extras", action="store_true", help="also measure step caching and token merging")
    parser.add_argument("--budget", type=float, default=420, help="seconds after which optional stages stop")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (compile cache reused)")
    args = parser.parse_args()
    args.batches = sorted({int(b) for b in args.batches.split(",")})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.tiny:
        parser.error("no GPU here: add --tiny to run the small models on the CPU")
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    disable_progress_bars()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    say(f"device: {name}, torch {torch.__version__}, diffusers {diffusers.__version__}")
    peak = matmul_peak(device)
    say(f"matmul peak measured now: {peak:.3g} TFLOP/s ({'fp16' if device.type == 'cuda' else 'fp32'})")
    work = args.keep or Path(tempfile.mkdtemp(prefix="salon-bench-"))
    for kind in [k.strip() for k in args.models.split(",") if k.strip()]:
        if elapsed() > args.budget:
            say(f"\n(budget of {args.budget:.0f}s spent: {kind} skipped)")
            continue
        bench_model(kind, args, device, peak, work)
    say(f"\ntotal {elapsed():.0f}s")
    say(json.dumps({"device": name, "seconds": round(elapsed())}))


if __name__ == "__main__":
    main()
