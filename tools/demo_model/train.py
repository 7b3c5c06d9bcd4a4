"""Train Salon's built-in demo model from nothing on 2 CPU cores: `python -m tools.demo_model.train --out DIR`.

A real Stable Diffusion architecture, only tiny: CLIP text encoder (the real CLIP BPE tokenizer),
UNet2DConditionModel and AutoencoderKL (factor 4: 64×64 images, 16×16×4 latents), trained on the coloured
shapes of `tools.demo_model.shapes`. Steps, in order:

1. Render the data set (deterministic by seed).
2. Train the VAE on reconstruction (decoder fed the posterior mean plus a little noise, so the latent space
   stays smooth), then set its scaling factor so latents have unit variance, as SD's 0.18215 does.
3. Encode every image once; tokenize every caption once.
4. Train text encoder and UNet together on SD's objective: predict the noise added with SD's scaled-linear
   betas. Three things make prompts control colours within the budget: offset noise (the mean colour of the
   starting noise then carries no information, so the model must take colours from the text), a global text
   path (the UNet's `addition_embed_type="text"` adds pooled text to the timestep embedding of every block),
   and min-SNR loss weights. 10 % of captions are dropped for classifier-free guidance; an EMA of the
   weights is what gets saved.
5. Save as a diffusers folder (`save_pretrained(safe_serialization=True)`, float16 weights) with a card.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.configs import CLIP_TOKENIZER
from tools.demo_model.shapes import IMAGE_SIZE, training_example

log = logging.getLogger("tools.demo_model.train")

SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the result; written into the model card."""

    seed: int = 0
    examples: int = 30000
    vae_steps: int = 800
    vae_batch: int = 32
    vae_lr: float = 1e-3
    vae_latent_noise: float = 0.05
    unet_steps: int = 4800
    unet_batch: int = 64
    unet_lr: float = 1e-3
    text_lr: float = 5e-4
    warmup_steps: int = 200
    offset_noise: float = 0.1
    min_snr_gamma: float = 5.0
    caption_dropout: float = 0.1
    ema_decay: float = 0.998
    threads: int = 2
    checkpoint_every: int = 0  # also save the EMA model every N UNet steps (0 = only at the end)


# ----- models ---------------------------------------------------------------------------------------------------
def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,  # groups of 4–16 channels: per-channel groups would normalise flat colours away
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config)


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=(48, 96, 96),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=4,
        norm_num_groups=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


# ----- data -----------------------------------------------------------------------------------------------------
def render_dataset(count: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """(count, 3, 64, 64) uint8 images and their captions, example i drawn from seed (seed * 10**7 + i)."""
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions = []
    for i in range(count):
        image, caption = training_example(seed * 10**7 + i)
        images[i] = np.asarray(image)
        captions.append(caption)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids


# ----- schedules ------------------------------------------------------------------------------------------------
def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, rates: list[float]) -> None:
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate


class Ema:
    """Exponential moving average of a model's weights (with the usual warm-up of the decay)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_param, param in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_param.lerp_(param.detach(), 1 - decay)


# ----- training --------------------------------------------------------------------------------------------------
def train_vae(images: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> tuple[object, dict]:
    vae = build_vae().train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    started, losses = time.perf_counter(), []
    for step in range(cfg.vae_steps):
        set_lr(optimizer, [learning_rate(step, cfg.vae_steps, cfg.vae_lr, 100)])
        index = torch.randint(0, len(images), (cfg.vae_batch,), generator=generator)
        x = to_unit_range(images[index])
        mean = vae.encode(x).latent_dist.mean
        z = mean + cfg.vae_latent_noise * torch.randn(mean.shape, generator=generator)
        recon = vae.decode(z).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-5 * mean.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        _log_progress("vae", step, cfg.vae_steps, losses, started)
    vae.eval().requires_grad_(False)
    return vae, {"vae_final_loss": float(np.mean(losses[-50:])), "vae_seconds": time.perf_counter() - started}


@torch.no_grad()
def encode_dataset(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Posterior means of every image, unscaled."""
    parts = [
        vae.encode(to_unit_range(images[i : i + batch])).latent_dist.mean
        for i in range(0, len(images), batch)
    ]
    return torch.cat(parts)


@torch.no_grad()
def reconstruction_error(vae, images: torch.Tensor) -> float:
    x = to_unit_range(images[:256])
    return float(F.mse_loss(vae.decode(vae.encode(x).latent_dist.mean).sample, x))


def train_unet(
    latents: torch.Tensor,
    ids: torch.Tensor,
    empty_ids: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    on_checkpoint=None,
):
    from diffusers import DDPMScheduler

    unet, text_encoder = build_unet().train(), build_text_encoder().train()
    noise_scheduler = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    alphas = noise_scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    optimizer = torch.optim.AdamW(
        [
            {"params": unet.parameters(), "lr": cfg.unet_lr},
            {"params": text_encoder.parameters(), "lr": cfg.text_lr},
        ],
        weight_decay=1e-2,
    )
    ema_unet, ema_text = Ema(unet, cfg.ema_decay), Ema(text_encoder, cfg.ema_decay)
    started, losses = time.perf_counter(), []
    for step in range(cfg.unet_steps):
        rates = [
            learning_rate(step, cfg.unet_steps, lr, cfg.warmup_steps) for lr in (cfg.unet_lr, cfg.text_lr)
        ]
        set_lr(optimizer, rates)
        index = torch.randint(0, len(latents), (cfg.unet_batch,), generator=generator)
        x0 = latents[index]
        tokens = ids[index].clone()
        dropped = torch.rand(cfg.unet_batch, generator=generator) < cfg.caption_dropout
        tokens[dropped] = empty_ids
        noise = torch.randn(x0.shape, generator=generator)
        noise = noise + cfg.offset_noise * torch.randn((x0.shape[0], x0.shape[1], 1, 1), generator=generator)
        t = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (cfg.unet_batch,), generator=generator
        )
        noisy = noise_scheduler.add_noise(x0, noise, t)
        states = text_encoder(tokens).last_hidden_state
        predicted = unet(noisy, t, states).sample
        weights = torch.clamp(snr[t], max=cfg.min_snr_gamma) / snr[t]
        loss = (weights * (predicted - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + list(text_encoder.parameters()), 1.0)
        optimizer.step()
        ema_unet.update(unet)
        ema_text.update(text_encoder)
        losses.append(loss.item())
        _log_progress("unet", step, cfg.unet_steps, losses, started)
        if on_checkpoint and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            on_checkpoint(step + 1, ema_unet.model, ema_text.model)
    stats = {"unet_final_loss": float(np.mean(losses[-100:])), "unet_seconds": time.perf_counter() - started}
    return ema_unet.model, ema_text.model, stats


def _log_progress(phase: str, step: int, total: int, losses: list[float], started: float) -> None:
    if (step + 1) % 50 == 0 or step + 1 == total:
        elapsed = time.perf_counter() - started
        eta = elapsed / (step + 1) * (total - step - 1)
        log.info(
            "%s step %d/%d loss %.4f  %.0fs elapsed, %.0fs left",
            phase,
            step + 1,
            total,
            float(np.mean(losses[-50:])),
            elapsed,
            eta,
        )


# ----- saving ----------------------------------------------------------------------------------------------------
def save_model(out: Path, vae, text_encoder, unet, tokenizer, cfg: TrainConfig, stats: dict) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe = copy.deepcopy(pipe).to(torch.float16)  # halves the files; the engine loads them in its own dtype
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "training.json").write_text(json.dumps({"config": asdict(cfg), "stats": stats}, indent=2) + "\n")
    write_model_card(out, cfg, stats)


def write_model_card(
    out: Path, cfg: TrainConfig, stats: dict, figures: dict[str, float] | None = None
) -> None:
    """README.md beside the weights: what the model is, how it was trained, and what it scores."""
    params = {
        name: sum(p.numel() for p in module.parameters()) for name, module in _saved_modules(out).items()
    }
    lines = [
        "# salon-demo-shapes",
        "",
        "Salon's built-in demo model: a tiny Stable Diffusion (SD 1.x layout) trained from scratch on 2 CPU cores by",
        "`python -m tools.demo_model.train`, on coloured shapes drawn by `tools/demo_model/shapes.py`. It makes",
        "Salon work offline with prompts such as `a red circle on a blue background` at 64×64. It knows nothing else.",
        "",
        "## Architecture",
        "",
        *(f"- {name}: {count / 1e6:.2f} M parameters" for name, count in params.items()),
        "- tokenizer: the real CLIP BPE (49,408 tokens), rebuilt from OpenAI's merge list "
        "(`engine/prompts/clip_vocab.py`)",
        "- AutoencoderKL with factor 4 (64×64 images ↔ 16×16×4 latents), scaling factor "
        f"{stats.get('scaling_factor', 0):.4f}; UNet2DConditionModel with cross-attention at 8×8 and 4×4 and a",
        '  pooled-text path into the timestep embedding (`addition_embed_type="text"`); weights stored as float16.',
        "",
        "## Data",
        "",
        f"{cfg.examples:,} rendered 64×64 images: one shape (80 %) or two, circle/square/triangle/star in 8 colours,",
        '5 positions, 2 sizes, on one of the other colours; captions like "a small red circle on the left, blue',
        'background" or "a red circle on a blue background". 71 single-shape combinations are held out for the',
        "evaluation.",
        "",
        "## Training",
        "",
        f"- VAE: {cfg.vae_steps} steps, batch {cfg.vae_batch}, reconstruction MSE "
        f"{stats.get('vae_reconstruction_mse', float('nan')):.4f} ([-1, 1] pixels), "
        f"{stats.get('vae_seconds', 0) / 60:.1f} min",
        f"- text encoder + UNet: {cfg.unet_steps} steps, batch {cfg.unet_batch}, lr {cfg.unet_lr} / {cfg.text_lr}, "
        f"offset noise {cfg.offset_noise}, min-SNR γ {cfg.min_snr_gamma}, caption dropout {cfg.caption_dropout}, "
        f"EMA {cfg.ema_decay}; final loss {stats.get('unet_final_loss', float('nan')):.4f}, "
        f"{stats.get('unet_seconds', 0) / 60:.1f} min",
        f"- total {stats.get('total_seconds', 0) / 60:.1f} min on this machine's 2 CPU cores, seed {cfg.seed}",
    ]
    if figures:
        lines += ["", "## Evaluation (`python -m tools.demo_model.evaluate`)", ""]
        lines += [f"- {key}: {value:.1%}" for key, value in figures.items()]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _saved_modules(out: Path) -> dict[str, torch.nn.Module]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    return {
        "text encoder (CLIP, 64 wide, 2 layers)": CLIPTextModel.from_pretrained(out / "text_encoder"),
        "UNet": UNet2DConditionModel.from_pretrained(out / "unet"),
        "VAE": AutoencoderKL.from_pretrained(out / "vae"),
    }


# ----- main ------------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, out: Path) -> dict:
    from transformers import CLIPTokenizer

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    started = time.perf_counter()

    # 1. Data.
    images, captions = render_dataset(cfg.examples, cfg.seed)
    log.info("rendered %d examples in %.0fs", len(images), time.perf_counter() - started)
    # 2. VAE, and its scaling factor.
    vae, stats = train_vae(images, cfg, generator)
    stats["vae_reconstruction_mse"] = reconstruction_error(vae, images)
    # 3. Latents and tokens, once.
    raw = encode_dataset(vae, images)
    scaling = float(1.0 / raw.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = raw * scaling
    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER)
    ids, empty_ids = tokenize(tokenizer, captions), tokenize(tokenizer, [""])[0]
    log.info(
        "VAE done (reconstruction MSE %.4f, scaling factor %.4f)", stats["vae_reconstruction_mse"], scaling
    )

    # 4. Text encoder and UNet.
    def checkpoint(step: int, unet, text_encoder) -> None:
        partial = {**stats, "unet_steps_done": step}
        save_model(out / "checkpoints" / f"step-{step}", vae, text_encoder, unet, tokenizer, cfg, partial)

    unet, text_encoder, unet_stats = train_unet(latents, ids, empty_ids, cfg, generator, checkpoint)
    stats.update(unet_stats, scaling_factor=scaling, total_seconds=time.perf_counter() - started)
    # 5. Save.
    save_model(out, vae, text_encoder, unet, tokenizer, cfg, stats)
    log.info("saved to %s after %.1f minutes", out, stats["total_seconds"] / 60)
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train Salon's demo model on synthetic shapes (CPU).")
    parser.add_argument("--out", type=Path, required=True, help="folder for the diffusers model")
    for field, value in asdict(TrainConfig()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(TrainConfig(**args), out)


if __name__ == "__main__":
    main()
