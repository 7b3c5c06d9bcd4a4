"""Applying A1111 hypernetworks (`<hypernet:name:strength>`) to a diffusers UNet.

As A1111 patches every ldm CrossAttention, every UNet attention layer (self-attention `attn1` and
cross-attention `attn2`) whose key input has a hypernetwork's width computes
`to_k(context + mlp_k(context) * strength)` and `to_v(context + mlp_v(context) * strength)`; several
hypernetworks apply one after the other. The layer's processor is wrapped while applied and given back after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from core.errors import InvalidRequest
from engine.prompts.hypernetwork import Hypernetwork, HypernetworkModule

# (keys MLP, values MLP, strength) of one hypernetwork at one width.
Stage = tuple[HypernetworkModule, HypernetworkModule, float]


def _transform(module: HypernetworkModule, x: torch.Tensor, strength: float) -> torch.Tensor:
    """Run one MLP in its own dtype (float32) and hand back the context's dtype."""
    dtype = module.linear[0].weight.dtype
    return module(x.to(dtype), strength).to(x.dtype)


def _through(stages: Sequence[Stage], index: int, context: torch.Tensor) -> torch.Tensor:
    """The context for keys (index 0) or values (index 1): through each stage's MLP in order."""
    for stage in stages:
        context = _transform(stage[index], context, stage[2])  # type: ignore[arg-type]
    return context


@contextmanager
def _input_transform(
    layer: torch.nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """While active, `layer` sees `transform(input)` instead of its input."""
    handle = layer.register_forward_pre_hook(lambda _m, args: (transform(args[0]), *args[1:]), prepend=True)
    try:
        yield
    finally:
        handle.remove()


class HypernetworkAttnProcessor(torch.nn.Module):
    """Wraps an attention layer's processor: `to_k` and `to_v` see their hypernetwork-transformed contexts.

    A torch Module (like diffusers' IP-Adapter processors), so the MLPs count as part of the UNet while applied.
    """

    def __init__(self, original: object, stages: list[Stage]) -> None:
        super().__init__()
        self.original = original
        self.stages = stages
        self.mlps = torch.nn.ModuleList([m for stage in stages for m in stage[:2]])

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: object,
        **kwargs: object,
    ) -> torch.Tensor:
        """The original processor's computation, with each context transformed before its projection."""
        keys = _input_transform(attn.to_k, lambda context: _through(self.stages, 0, context))
        values = _input_transform(attn.to_v, lambda context: _through(self.stages, 1, context))
        with keys, values:
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )


def _attention_layers(unet: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The transformer attention layers of a UNet (`attn1`, `attn2`): what A1111 patches as CrossAttention."""
    from diffusers.models.attention_processor import Attention

    for name, module in unet.named_modules():
        if isinstance(module, Attention) and name.rsplit(".", 1)[-1] in ("attn1", "attn2"):
            yield module


def _stages(uses: Sequence[tuple[Hypernetwork, float]], width: int) -> list[Stage]:
    """The stages of the hypernetworks that have MLPs for this width, in order."""
    return [(*h.layers[width], s) for h, s in uses if width in h.layers]  # type: ignore[misc]


def _check_processor(attn: torch.nn.Module) -> None:
    """Refuse layers whose processor this wrapper cannot wrap faithfully."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if not isinstance(attn.processor, AttnProcessor | AttnProcessor2_0) or attn.fused_projections:
        name = type(attn.processor).__name__
        raise InvalidRequest(
            "hypernet", f"hypernetworks cannot be combined with the attention processor {name}"
        )


@contextmanager
def applied_hypernetworks(unet: torch.nn.Module, uses: Sequence[tuple[Hypernetwork, float]]) -> Iterator[int]:
    """Apply hypernetworks (in order, with their strengths) to every matching attention layer; yields how many.

    Strength 0 or no hypernetwork leaves the UNet untouched. The original processors come back on exit. In
    training mode (`Hypernetwork.train()`) the MLPs use dropout and strength 1, as in A1111.
    """
    active = [(h.to(unet.device), float(s)) for h, s in uses if s != 0]
    originals: list[tuple[torch.nn.Module, object]] = []
    try:
        for attn in _attention_layers(unet) if active else ():
            stages = _stages(active, attn.to_k.in_features)
            if stages:
                _check_processor(attn)
                originals.append((attn, attn.processor))
                attn.set_processor(HypernetworkAttnProcessor(attn.processor, stages))
        yield len(originals)
    finally:
        for attn, processor in originals:
            attn.set_processor(processor)
