"""SD 3.5 and Flux speed on one card: `python bench/flow_gpu.py` (a GPU) or `--tiny` (any CPU).

Builds SD 3.5 large- and Flux dev-shaped models with random weights (the published architectures' sizes, in
bfloat16, built on the card; nothing is downloaded), saves each as a diffusers folder and prints, on the same
device: diffusers' own pipeline (the baseline) against Salon's engine per image at batch 1 and 1024×1024, eager
and in speed mode "max" (the transformer compiled by inductor for that shape after a timed warm-up), and the
engine's load time. One model at a time, its folder deleted after, so the disk holds one (Flux ≈ 34 GB).
Never run by default on a CPU: `--tiny` shrinks both to toy sizes at 64×64, to show the bench works.
Random weights make noise, not pictures: the figures are speed only.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from config import load_settings  # noqa: E402
from engine.configs import CLIP_TOKENIZER  # noqa: E402
from engine.requests import GenerationRequest  # noqa: E402
from engine.runner import Engine  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed, sharp focus"
# The published architectures (diffusers configs of stabilityai/stable-diffusion-3.5-large, black-forest-labs/
# FLUX.1-dev, google/t5-v1_1-xxl, CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 text towers) and toy ones for --tiny:
# what both share (`FIXED`), then their sizes. The transformers' pooled width is the text towers' (`build`).
FIXED = {
    "sd3": dict(patch_size=2, in_channels=16, out_channels=16),
    "flux": dict(patch_size=1, in_channels=64, guidance_embeds=True),
}
FULL = {
    "sd3": dict(
        sample_size=128,
        num_layers=38,
        attention_head_dim=64,
        num_attention_heads=38,
        joint_attention_dim=4096,
        caption_projection_dim=2432,
        pos_embed_max_size=192,
        qk_norm="rms_norm",
    ),
    "flux": dict(
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        axes_dims_rope=(16, 56, 56),
    ),
    "t5": dict(
        d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu"
    ),
    "clip_l": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    "clip_g": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20),
    "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
}
TINY = {
    "sd3": dict(
        sample_size=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        caption_projection_dim=16,
        pos_embed_max_size=32,
    ),
    "flux": dict(
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 4, 8),
    ),
    "t5": dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4),
    "clip_l": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2),
    "clip_g": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2),
    "vae": dict(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4),
}
_T5_WORDS = ["▁a", "▁photograph", "▁of", "▁an", "▁astronaut", "▁horse", "▁moon", "▁on", "▁the"]


def say(line: str) -> None:
    print(line, flush=True)


def _t5_tokenizer(folder: Path) -> None:
    """A small Unigram T5 tokenizer (the real one cannot be shipped; speed does not depend on its words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0 - i) for i, w in enumerate(_T5_WORDS)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    T5TokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)


def build(family: str, folder: Path, sizes: dict, device: torch.device, dtype: torch.dtype) -> Path:
    """A random-weight diffusers folder of `family` ("sd3" or "flux"), built on `device` in `dtype`."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        T5Config,
        T5EncoderModel,
    )

    def clip(name: str, projection: bool):
        config = CLIPTextConfig(
            vocab_size=49408,
            max_position_embeddings=77,
            projection_dim=sizes[name]["hidden_size"],
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_act="gelu",
            **sizes[name],
        )
        return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            vae = AutoencoderKL(
                latent_channels=16,
                down_block_types=("DownEncoderBlock2D",) * len(sizes["vae"]["block_out_channels"]),
                up_block_types=("UpDecoderBlock2D",) * len(sizes["vae"]["block_out_channels"]),
                use_quant_conv=False,
                use_post_quant_conv=False,
                shift_factor=0.0609,
                scaling_factor=1.5035,
                **sizes["vae"],
            )
            t5 = T5EncoderModel(
                T5Config(vocab_size=32128, is_encoder_decoder=False, use_cache=False, **sizes["t5"])
            )
            tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER)
            if family == "sd3":
                sd3_pooled = sizes["clip_l"]["hidden_size"] + sizes["clip_g"]["hidden_size"]
                transformer = SD3Transformer2DModel(
                    **FIXED["sd3"], **sizes["sd3"], pooled_projection_dim=sd3_pooled
                )
                pipe = StableDiffusion3Pipeline(
                    transformer=transformer,
                    scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                    vae=vae,
                    text_encoder=clip("clip_l", True),
                    tokenizer=tokenizer,
                    text_encoder_2=clip("clip_g", True),
                    tokenizer_2=tokenizer,
                    text_encoder_3=t5,
                    tokenizer_3=None,
                )
            else:
                transformer = FluxTransformer2DModel(
                    **FIXED["flux"], **sizes["flux"], pooled_projection_dim=sizes["clip_l"]["hidden_size"]
                )
                scheduler = FlowMatchEulerDiscreteScheduler(
                    shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15
                )
                pipe = FluxPipeline(
                    transformer=transformer,
                    scheduler=scheduler,
                    vae=vae,
                    text_encoder=clip("clip_l", False),
                    tokenizer=tokenizer,
                    text_encoder_2=t5,
                    tokenizer_2=None,
                )
    finally:
        torch.set_default_dtype(default)
    pipe.save_pretrained(folder, safe_serialization=True)
    slot = "tokenizer_3" if family == "sd3" else "tokenizer_2"
    _t5_tokenizer(folder / slot)
    index = json.loads((folder / "model_index.json").read_text())
    index[slot] = ["transformers", "T5TokenizerFast"]
    (folder / "model_index.json").write_text(json.dumps(index))
    del pipe
    return folder


def timed(function, device: torch.device, repeats: int) -> float:
    function()  # warm
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def bench(family: str, args, device: torch.device, work: Path) -> dict:
    from engine.models.flow_loading import pipeline_class

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sizes = TINY if args.tiny else FULL
    size, steps = (64, 2) if args.tiny else (1024, args.steps)
    cfg, label = (3.5, "SD 3.5 large") if family == "sd3" else (1.0, "Flux dev")
    root = work / family
    started = time.perf_counter()
    build(family, root / "models" / "Stable-diffusion" / family, sizes, device, dtype)
    say(f"\n{label}-shaped, random weights: built and saved in {time.perf_counter() - started:.0f}s")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    # Speed mode "max" compiling this size at batch 1; the same loaded model runs eagerly inside
    # `fast.eager_while` (two engines would hold two copies: Flux does not fit twice on one card).
    compiler = "inductor" if device.type == "cuda" else "eager"  # --tiny on a CPU: dynamo's tracing only
    speed = {
        "mode": "max",
        "compiler": compiler,
        "sizes": [f"{size}x{size}"],
        "batches": [1],
        "warmup": False,
    }
    engine = Engine(load_settings(None, data_dir=root, device=device.type, dtype="auto", speed=speed))
    started = time.perf_counter()
    model = engine.load(family)
    say(f"  engine load: {time.perf_counter() - started:.1f}s ({model.dtype})")
    fast = model.fast
    request = GenerationRequest(
        PROMPT,
        model=family,
        sampler="Euler",
        schedule="Simple",
        steps=steps,
        cfg_scale=cfg,
        width=size,
        height=size,
        seed=1,
    )
    plain_pipe = pipeline_class(family)(**model.pipe.components)
    plain_pipe.set_progress_bar_config(disable=True)
    extra = {"guidance_scale": 3.5} if family == "flux" else {"guidance_scale": cfg}

    def plain():
        generator = torch.Generator("cpu").manual_seed(1)
        plain_pipe(PROMPT, height=size, width=size, num_inference_steps=steps, generator=generator, **extra)

    with fast.eager_while("bench: eager baseline"):
        salon = timed(lambda: engine.txt2img(request), device, args.repeats)
        baseline = timed(plain, device, args.repeats)
    warmup = engine.warm_up([family], report=lambda line: say(f"  {line}"))
    compiled = timed(lambda: engine.txt2img(request), device, args.repeats)
    ran = dict(fast.calls)
    say(
        f"  {size}², {steps} steps, batch 1: diffusers {baseline:.2f}s, Salon eager {salon:.2f}s, "
        f'Salon "max" ({compiler}) {compiled:.2f}s per image ({steps / compiled:.2f} it/s); '
        f"warm-up {warmup:.0f}s; transformer calls {ran}"
    )
    if device.type == "cuda":
        say(f"  peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    shutil.rmtree(root, ignore_errors=True)
    return {
        "model": label,
        "diffusers_s": round(baseline, 3),
        "salon_s": round(salon, 3),
        "salon_max_s": round(compiled, 3),
        "compiler": compiler,
        "warmup_s": round(warmup, 1),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy models at 64×64 (runs on a CPU)")
    parser.add_argument("--models", default="sd3,flux", help="sd3, flux or both")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.tiny:
        parser.error("no GPU here: add --tiny to run toy models on the CPU")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    say(f"device: {name}, torch {torch.__version__}")
    work = Path(tempfile.mkdtemp(prefix="salon-flow-bench-"))
    try:
        figures = []
        for family in [f.strip() for f in args.models.split(",") if f.strip()]:
            figures.append(bench(family, args, device, work))
            gc.collect()  # the model's engine and pipeline go before the next one is built
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(json.dumps({"device": name, "figures": figures}))


if __name__ == "__main__":
    main()
