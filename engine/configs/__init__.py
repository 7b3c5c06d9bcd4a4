"""Paths of the diffusers configs shipped with Salon, so single-file checkpoints load without the network.

`SD15_CONFIG` and `SDXL_CONFIG` are diffusers pipeline folders without weights or tokenizers (pass them as
`config=` to `from_single_file`); `CONTROLNET_SD15_CONFIG`, `CONTROLNET_SD2_CONFIG` (SD 2.1's) and
`CONTROLNET_SDXL_CONFIG` are the ControlNet models of each (sd-webui-controlnet's single files load with them);
`CLIP_TOKENIZER` is the CLIP BPE tokenizer the models share. `SD2_CONFIG` (512-base, epsilon) and
`SD2_V_CONFIG` (768, v-prediction) are stabilityai/stable-diffusion-2-1-base and -2-1's components (the
OpenCLIP-H text encoder as a 23-layer CLIPTextModel: A1111's "penultimate" layer, its final norm applied; the
same tokenizer, padded with "!").
"""

from __future__ import annotations

from pathlib import Path

CONFIG_ROOT: Path = Path(__file__).resolve().parent
SD15_CONFIG: Path = CONFIG_ROOT / "sd15"
SDXL_CONFIG: Path = CONFIG_ROOT / "sdxl"
SD2_CONFIG: Path = CONFIG_ROOT / "sd2"
SD2_V_CONFIG: Path = CONFIG_ROOT / "sd2-v"
CLIP_TOKENIZER: Path = CONFIG_ROOT / "clip_tokenizer"
CONTROLNET_SD15_CONFIG: Path = CONFIG_ROOT / "controlnet_sd15"
CONTROLNET_SD2_CONFIG: Path = CONFIG_ROOT / "controlnet_sd2"
CONTROLNET_SDXL_CONFIG: Path = CONFIG_ROOT / "controlnet_sdxl"

__all__ = [
    "CLIP_TOKENIZER",
    "CONFIG_ROOT",
    "CONTROLNET_SD15_CONFIG",
    "CONTROLNET_SD2_CONFIG",
    "CONTROLNET_SDXL_CONFIG",
    "SD15_CONFIG",
    "SD2_CONFIG",
    "SD2_V_CONFIG",
    "SDXL_CONFIG",
]
