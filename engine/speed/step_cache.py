"""Step caching (the DeepCache idea, Ma et al. 2023): reuse the UNet's deep features on most steps.

Between two neighbouring denoising steps the features the UNet's deep blocks produce barely change, while
the outermost blocks (the first down block and the last up block, at full latent resolution) carry the
detail. Every `interval` steps the whole UNet runs and the input of its last up block is kept; the steps in
between run only the outermost blocks on that kept input. This is not exact: images change a little (the
bench reports the mean pixel difference) and the infotext records `Step cache interval`.

`unet_forward` is UNet2DConditionModel's forward for the SD 1.x and SDXL configurations, written out so it
can stop at the kept features; with `cached=None` it computes exactly what the UNet's own forward does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StepCache:
    """One denoising loop's cache: which step it is and the kept features."""

    interval: int
    step: int = 0
    features: torch.Tensor | None = None

    def full_step(self) -> bool:
        """Whether this step runs the whole UNet (the first step and every `interval`-th after it)."""
        return self.features is None or self.step % self.interval == 0

    def keep(self, features: torch.Tensor) -> None:
        self.features = features
        self.step += 1


def cached_step(
    unet, sample: torch.Tensor, timestep, states: torch.Tensor, added, cache: StepCache
) -> torch.Tensor:
    """One eager UNet call under `cache`: the whole UNet or only its outer blocks, as the cache says; the
    features are kept for the next steps."""
    with torch.no_grad():
        out, features = unet_forward(
            unet, sample, timestep, states, added, None if cache.full_step() else cache.features
        )
    cache.keep(features)
    return out


def _embedding(unet, sample: torch.Tensor, timestep, states: torch.Tensor, added) -> torch.Tensor:
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
    extra = unet.get_aug_embed(emb=emb, encoder_hidden_states=states, added_cond_kwargs=added or {})
    if extra is not None:
        emb = emb + extra
    return unet.time_embed_act(emb) if unet.time_embed_act is not None else emb


def _down(block, sample, emb, states):
    if getattr(block, "has_cross_attention", False):
        return block(hidden_states=sample, temb=emb, encoder_hidden_states=states)
    return block(hidden_states=sample, temb=emb)


def _up(block, sample, emb, states, residuals, upsample_size):
    if getattr(block, "has_cross_attention", False):
        return block(
            hidden_states=sample,
            temb=emb,
            res_hidden_states_tuple=residuals,
            encoder_hidden_states=states,
            upsample_size=upsample_size,
        )
    return block(
        hidden_states=sample, temb=emb, res_hidden_states_tuple=residuals, upsample_size=upsample_size
    )


def unet_forward(
    unet, sample: torch.Tensor, timestep, states: torch.Tensor, added, cached: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise prediction, input of the last up block). Given `cached` (that input from an earlier step), only
    the first down block and the last up block run."""
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0
    uneven = any(side % 2**unet.num_upsamplers for side in sample.shape[-2:])
    emb = _embedding(unet, sample, timestep, states, added)
    states = unet.process_encoder_hidden_states(encoder_hidden_states=states, added_cond_kwargs=added or {})
    sample = unet.conv_in(sample)
    residuals: tuple[torch.Tensor, ...] = (sample,)
    for block in unet.down_blocks if cached is None else unet.down_blocks[:1]:
        sample, found = _down(block, sample, emb, states)
        residuals += found
    if cached is None:
        if unet.mid_block is not None:
            if getattr(unet.mid_block, "has_cross_attention", False):
                sample = unet.mid_block(sample, emb, encoder_hidden_states=states)
            else:
                sample = unet.mid_block(sample, emb)
        for block in unet.up_blocks[:-1]:
            count = len(block.resnets)
            used, residuals = residuals[-count:], residuals[:-count]
            size = residuals[-1].shape[2:] if uneven else None
            sample = _up(block, sample, emb, states, used, size)
        features = sample
    else:
        features = cached
    last = unet.up_blocks[-1]
    sample = _up(last, features, emb, states, residuals[: len(last.resnets)], None)
    if unet.conv_norm_out is not None:
        sample = unet.conv_act(unet.conv_norm_out(sample))
    return unet.conv_out(sample), features
