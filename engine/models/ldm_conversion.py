"""diffusers → A1111 (ldm): the key conversion and the single-file checkpoint writer.

`diffusers_to_ldm` is the inverse of diffusers' `single_file_utils` conversion (key names as in
`scripts/convert_diffusers_to_original_stable_diffusion.py` and `..._sdxl.py`), driven by the model configs so
any block layout converts. `save_single_file` writes the result as a `.safetensors` file A1111 loads. Torch
and safetensors are imported inside functions, so importing this is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InvalidRequest
from core.files import atomic_write_with
from engine.models.model_files import (
    SD1_TEXT_PREFIX,
    SD2_TEXT_PREFIX,
    SDXL_CLIP_L_PREFIX,
    SDXL_OPENCLIP_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
)

if TYPE_CHECKING:
    import torch

_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPENCLIP_FIXED = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPENCLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_DOWN = re.compile(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)")
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")
_UP = re.compile(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)")
_VAE_DOWN = re.compile(r"encoder\.down_blocks\.(\d+)\.(resnets|downsamplers)\.(\d+)\.(.+)")
_VAE_UP = re.compile(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)")
_VAE_MID = re.compile(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)")
_CLIP_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")
_CLIP_QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")


def _unconvertible(component: str, key: str) -> InvalidRequest:
    """The error for a weight this converter has no A1111 name for (never drop weights silently)."""
    return InvalidRequest("model", f"cannot convert {component} weight {key!r} to the A1111 layout")


def _rename_head(rest: str, table: Mapping[str, str]) -> str:
    """Rename the leading module path of `rest` (e.g. 'norm1.weight') through `table`, keeping the tail."""
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def _per_block(value: int | Sequence[int], count: int) -> list[int]:
    """A per-block config value (int or sequence) as a list of `count` ints."""
    return [int(value)] * count if isinstance(value, int) else [int(v) for v in value]


def _starts(sizes: Sequence[int], first: int) -> list[int]:
    """Running start indices: block i starts after blocks 0..i-1 of the given sizes."""
    starts = [first]
    for size in sizes[:-1]:
        starts.append(starts[-1] + size)
    return starts


@dataclass(frozen=True)
class _UNetLayout:
    """Where each diffusers block lands in ldm's flat input_blocks/output_blocks numbering."""

    down_layers: list[int]
    down_start: list[int]
    up_layers: list[int]
    up_start: list[int]
    up_has_attention: list[bool]

    @classmethod
    def of(cls, config: Mapping[str, Any], keys: Sequence[str]) -> _UNetLayout:
        """Derive the layout from the UNet config (block count, layers per block) and its attention keys."""
        count = len(config["down_block_types"])
        down = _per_block(config["layers_per_block"], count)
        up = list(reversed(down))
        has_attention = [any(k.startswith(f"up_blocks.{i}.attentions.") for k in keys) for i in range(count)]
        down_start, up_start = _starts([n + 1 for n in down], 1), _starts([n + 1 for n in up], 0)
        return cls(down, down_start, up, up_start, has_attention)


def _unet_down_key(match: re.Match[str], layout: _UNetLayout) -> str:
    """input_blocks name of a down-block resnet, attention or downsampler."""
    block, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
    if kind == "downsamplers":
        slot = layout.down_start[block] + layout.down_layers[block]
        return f"input_blocks.{slot}.0.op.{rest.removeprefix('conv.')}"
    if kind == "resnets":
        return f"input_blocks.{layout.down_start[block] + index}.0.{_rename_head(rest, _UNET_RESNET)}"
    return f"input_blocks.{layout.down_start[block] + index}.1.{rest}"


def _unet_up_key(match: re.Match[str], layout: _UNetLayout) -> str:
    """output_blocks name of an up-block resnet, attention or upsampler (after the attention if any)."""
    block, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
    if kind == "upsamplers":
        slot = 2 if layout.up_has_attention[block] else 1
        return f"output_blocks.{layout.up_start[block] + layout.up_layers[block]}.{slot}.{rest}"
    if kind == "resnets":
        return f"output_blocks.{layout.up_start[block] + index}.0.{_rename_head(rest, _UNET_RESNET)}"
    return f"output_blocks.{layout.up_start[block] + index}.1.{rest}"


def _unet_mid_key(match: re.Match[str]) -> str:
    """middle_block name: resnets at even slots, the attention between them."""
    kind, index, rest = match[1], int(match[2]), match[3]
    if kind == "resnets":
        return f"middle_block.{2 * index}.{_rename_head(rest, _UNET_RESNET)}"
    return f"middle_block.{2 * index + 1}.{rest}"


def _unet_key(key: str, layout: _UNetLayout) -> str:
    """The ldm name (without prefix) of one diffusers UNet weight."""
    fixed = _rename_head(key, _UNET_FIXED)
    if fixed != key:
        return fixed
    if match := _DOWN.fullmatch(key):
        return _unet_down_key(match, layout)
    if match := _UP.fullmatch(key):
        return _unet_up_key(match, layout)
    if match := _MID.fullmatch(key):
        return _unet_mid_key(match)
    raise _unconvertible("UNet", key)


def convert_unet(unet: Any) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel weights under `model.diffusion_model.` with ldm block numbering."""
    state = unet.state_dict()
    layout = _UNetLayout.of(unet.config, list(state))
    return {UNET_PREFIX + _unet_key(key, layout): value for key, value in state.items()}


def ldm_unet_names(unet: Any, paths: Sequence[str]) -> dict[str, str]:
    """The ldm (Stability) name of each diffusers module or weight path of `unet`, numbered from its config;
    kohya names SDXL LoRA modules so (SDXL's `down_blocks.1.attentions.0.…` is `input_blocks.4.1.…`)."""
    layout = _UNetLayout.of(unet.config, [name for name, _ in unet.named_parameters()])
    return {path: _unet_key(path, layout) for path in paths}


def _vae_resnet(rest: str) -> str:
    """VAE resnets keep diffusers names except the shortcut."""
    return _rename_head(rest, {"conv_shortcut": "nin_shortcut"})


def _vae_mid_key(match: re.Match[str]) -> str:
    """mid.block_1/2 and mid.attn_1 names of a VAE mid-block weight."""
    side, kind, index, rest = match[1], match[2], int(match[3]), match[4]
    if kind == "resnets":
        return f"{side}.mid.block_{index + 1}.{_vae_resnet(rest)}"
    return f"{side}.mid.attn_{index + 1}.{_rename_head(rest, _VAE_ATTENTION)}"


def _vae_key(key: str, up_blocks: int) -> str:
    """The ldm name (without prefix) of one diffusers VAE weight; decoder blocks are numbered in reverse."""
    if match := _VAE_DOWN.fullmatch(key):
        block, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        if kind == "downsamplers":
            return f"encoder.down.{block}.downsample.{rest}"
        return f"encoder.down.{block}.block.{index}.{_vae_resnet(rest)}"
    if match := _VAE_UP.fullmatch(key):
        block, kind, index, rest = up_blocks - 1 - int(match[1]), match[2], int(match[3]), match[4]
        if kind == "upsamplers":
            return f"decoder.up.{block}.upsample.{rest}"
        return f"decoder.up.{block}.block.{index}.{_vae_resnet(rest)}"
    if match := _VAE_MID.fullmatch(key):
        return _vae_mid_key(match)
    side, _, rest = key.partition(".")
    if side in ("encoder", "decoder") and rest.split(".")[0] in ("conv_in", "conv_out", "conv_norm_out"):
        return f"{side}.{_rename_head(rest, {'conv_norm_out': 'norm_out'})}"
    if side in ("quant_conv", "post_quant_conv"):
        return key
    raise _unconvertible("VAE", key)


def convert_vae(vae: Any) -> dict[str, torch.Tensor]:
    """AutoencoderKL weights under `first_stage_model.`, mid-block attention as 1×1 convolutions."""
    up_blocks = len(vae.config["up_block_types"])
    result = {}
    for key, value in vae.state_dict().items():
        name = _vae_key(key, up_blocks)
        if ".mid.attn_" in name and name.endswith(".weight") and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        result[VAE_PREFIX + name] = value
    return result


def _text_state(text_encoder: Any) -> dict[str, torch.Tensor]:
    """CLIP text weights without the `text_model.` wrapper (transformers ≥ 5.6 flattened CLIPTextModel)."""
    return {key.removeprefix("text_model."): value for key, value in text_encoder.state_dict().items()}


def convert_clip_text(text_encoder: Any, prefix: str) -> dict[str, torch.Tensor]:
    """OpenAI CLIP text encoder (SD1, SDXL's first) under `prefix + 'text_model.'`, HF names kept."""
    result = {}
    for key, value in _text_state(text_encoder).items():
        if not key.startswith(("embeddings.", "encoder.", "final_layer_norm.")):
            raise _unconvertible("text encoder", key)
        result[f"{prefix}text_model.{key}"] = value
    return result


def _openclip_key(key: str) -> str:
    """OpenCLIP name of a non-q/k/v weight of CLIPTextModelWithProjection."""
    if key in _OPENCLIP_FIXED:
        return _OPENCLIP_FIXED[key]
    if match := _CLIP_LAYER.fullmatch(key):
        module = match[2]
        if module in _OPENCLIP_LAYER:
            return f"transformer.resblocks.{match[1]}.{_OPENCLIP_LAYER[module]}.{match[3]}"
    raise _unconvertible("text encoder 2", key)


def _fuse_qkv(parts: Mapping[tuple[str, str], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-layer q, k, v projections into OpenCLIP's `attn.in_proj_weight`/`in_proj_bias`."""
    import torch

    result = {}
    for (layer, kind), qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            raise InvalidRequest("model", f"text encoder 2 layer {layer} lacks one of q/k/v {kind}")
        fused = torch.cat([qkv["q"], qkv["k"], qkv["v"]])
        result[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    return result


def convert_openclip_text(text_encoder: Any, prefix: str = SDXL_OPENCLIP_PREFIX) -> dict[str, torch.Tensor]:
    """SDXL's second text encoder in OpenCLIP layout: fused in_proj, transposed text_projection."""
    result: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in _text_state(text_encoder).items():
        if key == "text_projection.weight":
            result["text_projection"] = value.T.contiguous()  # OpenCLIP computes x @ text_projection
        elif match := _CLIP_QKV.fullmatch(key):
            qkv.setdefault((match[1], match[3]), {})[match[2]] = value
        else:
            result[_openclip_key(key)] = value
    result.update(_fuse_qkv(qkv))
    return {prefix + key: value for key, value in result.items()}


def diffusers_to_ldm(
    unet: Any, vae: Any, text_encoder: Any, text_encoder_2: Any = None
) -> dict[str, torch.Tensor]:
    """One A1111/ldm single-file state dict from diffusers components (SDXL with `text_encoder_2`; SD 2.x's
    OpenCLIP text encoder in OpenCLIP layout under `cond_stage_model.model.`, as SDXL's second)."""
    state = {**convert_unet(unet), **convert_vae(vae)}
    if text_encoder_2 is None and _is_openclip(text_encoder):
        state.update(convert_openclip_text(text_encoder, SD2_TEXT_PREFIX))
    elif text_encoder_2 is None:
        state.update(convert_clip_text(text_encoder, SD1_TEXT_PREFIX))
    else:
        state.update(convert_clip_text(text_encoder, SDXL_CLIP_L_PREFIX))
        state.update(convert_openclip_text(text_encoder_2))
    return state


def _is_openclip(text_encoder: Any) -> bool:
    """SD 2.x's text encoder (OpenCLIP-H as a CLIPTextModel: GELU, 1024 wide)."""
    from engine.models.sd2_family import is_openclip_text_config

    config = text_encoder.config
    return is_openclip_text_config({"hidden_size": config.hidden_size, "hidden_act": config.hidden_act})


def _components(pipe_or_components: Any) -> Mapping[str, Any]:
    """The component mapping of a diffusers pipeline, or the mapping itself."""
    if isinstance(pipe_or_components, Mapping):
        return pipe_or_components
    return pipe_or_components.components


def _check_metadata_arg(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    """Safetensors metadata must be str → str; fail before writing anything."""
    if metadata is None:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata must map str to str")
    return dict(metadata)


def save_single_file(pipe_or_components: Any, path: Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write an A1111-loadable single-file `.safetensors` checkpoint atomically (core.files.atomic_write_with)."""
    checked = _check_metadata_arg(metadata)
    parts = _components(pipe_or_components)
    state = diffusers_to_ldm(parts["unet"], parts["vae"], parts["text_encoder"], parts.get("text_encoder_2"))
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in state.items()}
    return _atomic_save(tensors, Path(path), checked)


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None) -> Path:
    """save_file through core.files.atomic_write_with: readers never see half a file."""
    from safetensors.torch import save_file

    return atomic_write_with(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))
