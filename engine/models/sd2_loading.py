"""Stable Diffusion 2.x single files after loading: v-prediction or epsilon, decided as A1111 decides.

A1111 (`modules/sd_models_config.py`, `is_using_v_parameterization_for_sd2`) runs the checkpoint's UNet once
on a fixed input when no `<checkpoint>.yaml` says: latents of 0.5 (1×4×8×8), a text context of 0.5 (1×2×1024),
timestep 999; a v-prediction UNet's output minus the latents has a mean below −1 there (an epsilon UNet
predicts the noise, about the input's scale). Salon runs the same test on the UNet it has just loaded (in its
device and dtype; A1111 runs float32 on the CPU), once per file: the answer is remembered beside it
(`engine.models.sd2_family`). The pipeline then gets the scheduler's `prediction_type` and, for v models,
the 768 config's `upcast_attention` (when the answer was known before loading, the 768 config itself loads).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from engine.models.sd2_family import EPSILON, V_PREDICTION, known_prediction, remember_prediction

log = logging.getLogger(__name__)

TEST_TIMESTEP = 999
TEST_VALUE = 0.5
TEST_LATENT_SHAPE = (1, 4, 8, 8)
TEST_CONTEXT_TOKENS = 2
V_THRESHOLD = -1.0


@torch.no_grad()
def unet_test_mean(unet) -> float:
    """A1111's statistic: mean(unet(x, 999, context) − x) for x and context filled with 0.5."""
    param = next(unet.parameters())
    width = int(unet.config.cross_attention_dim)
    x = torch.full(TEST_LATENT_SHAPE, TEST_VALUE, device=param.device, dtype=param.dtype)
    context = torch.full((1, TEST_CONTEXT_TOKENS, width), TEST_VALUE, device=param.device, dtype=param.dtype)
    timestep = torch.tensor([TEST_TIMESTEP], device=param.device)
    out = unet(x, timestep, encoder_hidden_states=context, return_dict=False)[0]
    return float((out.float() - x.float()).mean())


def unet_predicts_v(unet) -> bool:
    """True when the UNet passes A1111's v-parameterization test."""
    return unet_test_mean(unet) < V_THRESHOLD


def decide_prediction(pipe, checkpoint: Path, inpainting: bool) -> str:
    """The checkpoint's prediction type: SD 2 inpainting is epsilon (A1111's v2-inpainting config); else its
    yaml, else the remembered test, else the test run now (and remembered)."""
    if inpainting:
        return EPSILON
    known = known_prediction(checkpoint)
    if known is not None:
        return known
    mean = unet_test_mean(pipe.unet)
    decided = V_PREDICTION if mean < V_THRESHOLD else EPSILON
    log.info("SD 2.x %s: UNet test mean %.3f → %s", checkpoint.name, mean, decided)
    remember_prediction(checkpoint, decided)
    return decided


def apply_prediction(pipe, prediction: str) -> None:
    """Give the loaded pipeline's scheduler this prediction type (and a v model the 768 UNet settings)."""
    if pipe.scheduler.config.get("prediction_type") != prediction:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction)
    if prediction == V_PREDICTION and not pipe.unet.config.get("upcast_attention", False):
        from diffusers.models.attention_processor import Attention

        for module in pipe.unet.modules():
            if isinstance(module, Attention):
                module.upcast_attention = True
        pipe.unet.register_to_config(upcast_attention=True)
