"""Tiny random-weight SD 3.5 and Flux diffusers folders for tests, built from configs (nothing downloaded).

The components are diffusers' and transformers' own classes at toy sizes: a 16-channel AutoencoderKL, CLIP-L
(and CLIP-G for SD3) with projections and the CLIP tokenizer Salon ships, a T5 encoder with a tiny Unigram
tokenizer made with the `tokenizers` library and saved as `T5TokenizerFast`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.configs import CLIP_TOKENIZER

T5_WIDTH = 32
LATENT_CHANNELS = 16
_T5_WORDS = ["▁a", "▁red", "▁blue", "▁circle", "▁square", "▁cat", "▁on", "▁the", "▁green", "▁dog"]


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def _clip(hidden: int, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        hidden_act="gelu",
    )
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config)


def _t5():
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(_T5_WORDS) + 3,
        d_model=T5_WIDTH,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        is_encoder_decoder=False,
        use_cache=False,
    )
    return T5EncoderModel(config)


def save_t5_tokenizer(folder: Path) -> None:
    """A tiny Unigram tokenizer (pad 0, eos 1, unk 2, then a few words) saved as a T5TokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0 - i) for i, w in enumerate(_T5_WORDS)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    fast = T5TokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0
    )
    fast.save_pretrained(folder)


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(CLIP_TOKENIZER)


def _scheduler(shift: float, dynamic: bool = False):
    from diffusers import FlowMatchEulerDiscreteScheduler

    extra = dict(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15) if dynamic else {}
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift, **extra)


def sd3_pipeline():
    """A tiny StableDiffusion3Pipeline (random weights, seeded)."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=T5_WIDTH,
        caption_projection_dim=16,
        pooled_projection_dim=32,
        pos_embed_max_size=32,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=_scheduler(3.0),
        vae=_vae(),
        text_encoder=_clip(16, True),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=_clip(16, True),
        tokenizer_2=_clip_tokenizer(),
        text_encoder_3=_t5(),
        tokenizer_3=None,
    )


def flux_pipeline(guidance: bool = True):
    """A tiny FluxPipeline: with guidance embeddings (dev), or without (schnell)."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=LATENT_CHANNELS * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=16,
        guidance_embeds=guidance,
        axes_dims_rope=[4, 4, 8],
    )
    return FluxPipeline(
        transformer=transformer,
        scheduler=_scheduler(1.0 if not guidance else 3.0, dynamic=guidance),
        vae=_vae(),
        text_encoder=_clip(16, False),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=_t5(),
        tokenizer_2=None,
    )


def save_folder(pipe, folder: Path, *, t5_tokenizer: bool = True) -> Path:
    """Save `pipe` as a diffusers folder (safetensors), with the tiny T5 tokenizer in its slot."""
    pipe.save_pretrained(folder, safe_serialization=True)
    slot = "tokenizer_3" if (folder / "text_encoder_3").is_dir() else "tokenizer_2"
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if t5_tokenizer:
        save_t5_tokenizer(folder / slot)
        index[slot] = ["transformers", "T5TokenizerFast"]
    index_path.write_text(json.dumps(index, indent=2), encoding="utf-8")
    return folder


def sd3_folder(folder: Path, **kwargs) -> Path:
    return save_folder(sd3_pipeline(), folder, **kwargs)


def flux_folder(folder: Path, guidance: bool = True, **kwargs) -> Path:
    return save_folder(flux_pipeline(guidance), folder, **kwargs)


def save_lora(model_folder: Path, path: Path, seed: int, targets: tuple[str, ...] = ("to_q", "to_v")) -> Path:
    """A random LoRA (peft, rank 4) on the transformer of `model_folder`, saved with diffusers'
    `save_lora_weights` (keys `transformer.….lora_A.weight`) as one `.safetensors` file at `path`."""
    import tempfile

    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    index = json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))
    sd3 = index["_class_name"] == "StableDiffusion3Pipeline"
    from diffusers import (
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    model_cls = SD3Transformer2DModel if sd3 else FluxTransformer2DModel
    transformer = model_cls.from_pretrained(model_folder / "transformer")
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=list(targets), init_lora_weights=False)
    transformer.add_adapter(config)
    with torch.no_grad():  # large enough to change a tiny model's image visibly
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.mul_(20.0)
    state = get_peft_model_state_dict(transformer)
    with tempfile.TemporaryDirectory() as tmp:
        (StableDiffusion3Pipeline if sd3 else FluxPipeline).save_lora_weights(
            tmp, transformer_lora_layers=state
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "pytorch_lora_weights.safetensors").replace(path)
    return path


# diffusers' SD3 transformer names → SAI's (the inverse of diffusers' convert_sd3_transformer_checkpoint_to_diffusers
# in loaders/single_file_utils.py, diffusers 0.42.1); the q, k, v of an attention are one `qkv` tensor there.
_SAI_TOP = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}
_SAI_BLOCK = {
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
}


def save_sai_sd3_file(model_folder: Path, path: Path) -> Path:
    """The SD3 transformer of `model_folder` as a single file in SAI's layout (`model.diffusion_model.
    joint_blocks.N.…`, random values where diffusers' converter swaps halves), with the folder's other
    components as the `<name>.config/` folder beside it (the transformer's config.json, no weights)."""
    import shutil

    from safetensors.torch import load_file, save_file

    state = load_file(model_folder / "transformer" / "diffusion_pytorch_model.safetensors")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        stem, _, leaf = name.rpartition(".")
        if stem in _SAI_TOP or name in _SAI_TOP:
            out[_SAI_TOP.get(name) or f"{_SAI_TOP[stem]}.{leaf}"] = tensor
            continue
        _, number, rest = name.split(".", 2)
        block = f"joint_blocks.{number}"
        inner, _, leaf = rest.rpartition(".")
        if inner in _SAI_BLOCK:
            out[f"{block}.{_SAI_BLOCK[inner]}.{leaf}"] = tensor
        elif inner in ("attn.to_q", "attn.add_q_proj"):
            side = "x_block" if inner == "attn.to_q" else "context_block"
            parts = (
                ("to_q", "to_k", "to_v") if side == "x_block" else ("add_q_proj", "add_k_proj", "add_v_proj")
            )
            qkv = [state[f"transformer_blocks.{number}.attn.{p}.{leaf}"] for p in parts]
            out[f"{block}.{side}.attn.qkv.{leaf}"] = torch.cat(qkv)
    out = {f"model.diffusion_model.{k}": v.contiguous() for k, v in out.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, path)
    config = path.with_name(path.stem + ".config")
    shutil.copytree(model_folder, config)
    for weights in (config / "transformer").glob("*.safetensors"):
        weights.unlink()  # the transformer's weights are the single file's
    return path
