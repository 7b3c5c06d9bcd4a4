"""LoRA files named as kohya's sd-scripts names them, so kohya's tools (and A1111) find every module.

Pinned from kohya-ss/sd-scripts at 48d368fa557731ad0488c07304dfeba8c07910eb:

- `networks/lora.py`: a module's LoRA is `lora_unet_` + its path with dots as underscores.
- SD 1.x (`train_network.py`, on `library/original_unet.py`): the UNet keeps diffusers' module paths.
- SDXL (`sdxl_train_network.py`, on `library/sdxl_original_unet.py`): Stability's paths.
  `library/sdxl_model_util.py` `make_unet_conversion_map` for SDXL (`DIFFUSERS_SDXL_UNET_CONFIG`: 3 blocks,
  2 layers each): `down_blocks.i.attentions.j.` = `input_blocks.{3i+j+1}.1.`, `up_blocks.i.attentions.j.` =
  `output_blocks.{3i+j}.1.`, `mid_block.attentions.0.` = `middle_block.1.`; inside the attention the names
  agree. `networks/sdxl_merge_lora.py` skips a LoRA module with any other name ("no module found").
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.models.ldm_conversion import ldm_unet_names
from engine.prompts.lora import kohya_key
from engine.training.loop import LoopOptions, LoopState
from engine.training.lora import ADAPTER, LoraOptions, LoraTrainer, save_lora
from tests.engine.helpers import pixels, request

OPTIONS = LoraOptions("xl", LoopOptions(steps=1, learning_rate="1e-4"), rank=4, resolution=64)


def _kohya_sdxl_name(path: str) -> str:
    """kohya's conversion table for SDXL, applied to one diffusers attention module path."""
    if match := re.fullmatch(r"down_blocks\.(\d)\.attentions\.(\d)\.(.+)", path):
        i, j, rest = int(match[1]), int(match[2]), match[3]
        return f"input_blocks.{3 * i + j + 1}.1.{rest}"
    if match := re.fullmatch(r"up_blocks\.(\d)\.attentions\.(\d)\.(.+)", path):
        i, j, rest = int(match[1]), int(match[2]), match[3]
        return f"output_blocks.{3 * i + j}.1.{rest}"
    return path.replace("mid_block.attentions.0.", "middle_block.1.")


def test_sdxl_unet_module_names_are_kohyas():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # SDXL's UNet, without its weights
        unet = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
    paths = [n for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear) and ".attentions." in n]
    names = ldm_unet_names(unet, paths)
    assert len(paths) == 722 and len(set(names.values())) == len(paths)
    assert {path: _kohya_sdxl_name(path) for path in paths} == names
    assert names["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"] == (
        "input_blocks.4.1.transformer_blocks.0.attn1.to_q"
    )


def _randomised(trainer: LoraTrainer) -> LoraTrainer:
    """Adapters with an effect (peft starts lora_B at zero)."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in trainer.parameters.values():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return trainer


def _diffusers_named(trainer: LoraTrainer) -> dict[str, torch.Tensor]:
    """The same adapters under diffusers' module paths (what Salon wrote for SDXL before)."""
    from peft.tuners.lora import LoraLayer

    tensors = {}
    for name, module in trainer.unet.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            key = kohya_key("lora_unet_", name)
            tensors[f"{key}.lora_down.weight"] = module.lora_A[ADAPTER].weight.detach().float()
            tensors[f"{key}.lora_up.weight"] = module.lora_B[ADAPTER].weight.detach().float()
            tensors[f"{key}.alpha"] = torch.tensor(OPTIONS.scale_alpha)
    return tensors


def test_an_sdxl_lora_is_saved_in_stability_names_and_renders_as_before(tmp_path, tiny_sdxl_dir):
    from config import load_settings
    from engine.runner import Engine

    shutil.copytree(tiny_sdxl_dir, tmp_path / "models" / "Stable-diffusion" / "tiny-xl")
    engine = Engine(load_settings(None, data_dir=tmp_path, default_model="tiny-xl"))
    trainer = _randomised(LoraTrainer(engine.base_model(None), OPTIONS))
    tensors = trainer.kohya_tensors()
    modules = {k.removesuffix(".lora_down.weight") for k in tensors if k.endswith(".lora_down.weight")}
    # The tiny model (2 blocks, 1 layer each): its attentions are input_blocks.3.1, middle_block.1 and
    # output_blocks.0.1 / 1.1 in Stability's numbering, one file module per adapted layer.
    blocks = [
        re.match(r"lora_unet_((input|output)_blocks_\d+_1|middle_block_1)_transformer_", m) for m in modules
    ]
    assert all(blocks), sorted(modules)[:3]
    assert {b[1] for b in blocks} == {
        "input_blocks_3_1",
        "middle_block_1",
        "output_blocks_0_1",
        "output_blocks_1_1",
    }
    old = _diffusers_named(trainer)
    assert len(modules) * 3 == len(old) == len(tensors)
    save_lora(trainer, engine.settings.lora_dir / "xl.safetensors", LoopState(step=1), 1)
    save_file(old, str(engine.settings.lora_dir / "xl_old.safetensors"))
    # diffusers' converter (what Salon loads LoRAs through) turns both into the same adapters.
    pipe = trainer.model.pipe
    new_state, new_alphas = pipe.lora_state_dict(
        load_file(engine.settings.lora_dir / "xl.safetensors"), unet_config=pipe.unet.config
    )
    old_state, old_alphas = pipe.lora_state_dict(
        load_file(engine.settings.lora_dir / "xl_old.safetensors"), unet_config=pipe.unet.config
    )
    assert new_state.keys() == old_state.keys() and len(new_state) == 2 * len(modules)
    assert new_alphas == old_alphas
    assert all(torch.equal(new_state[k], old_state[k]) for k in new_state)
    engine.registry.refresh()
    base, renamed, before = (
        pixels(engine.txt2img(request(f"zkw{tag}", steps=2)).images[0].image)
        for tag in ("", " <lora:xl:1>", " <lora:xl_old:1>")
    )
    assert np.abs(base - renamed).mean() > 1
    assert np.array_equal(renamed, before)  # both namings load to the same weights


@pytest.mark.parametrize("text_encoder", [False, True])
def test_sd1_lora_names_stay_diffusers_paths(engine, text_encoder):
    from peft.tuners.lora import LoraLayer

    options = LoraOptions("sd1", OPTIONS.loop, rank=4, resolution=64, train_text_encoder=text_encoder)
    trainer = LoraTrainer(engine.load(None), options)
    layers = [n for n, m in trainer.unet.named_modules() if isinstance(m, LoraLayer)]
    tensors = trainer.kohya_tensors()
    unet = {k.removesuffix(".lora_down.weight") for k in tensors if k.endswith(".lora_down.weight")}
    unet = {k for k in unet if k.startswith("lora_unet_")}
    assert unet == {kohya_key("lora_unet_", n) for n in layers}
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q" in unet
    prefixes = {k.split("_")[1] for k in tensors}
    assert prefixes == ({"unet", "te"} if text_encoder else {"unet"})
    assert not text_encoder or "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha" in tensors
