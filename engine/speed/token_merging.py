"""Token merging (the ToMe for Stable Diffusion idea, Bolya & Hoffman 2023) in the UNet's self-attention.

At the highest resolution that has attention, self-attention costs the most (its cost grows with the square of the token
count) and neighbouring tokens are often near copies. Before each such attention, a share `ratio` of the
tokens is averaged into similar ones, attention runs on what is left, and every merged token gets its
destination's result back. Destinations are one token per 2×2 window (the top-left one, so results are
deterministic); each other token is matched to its most similar destination (cosine similarity) and the
`ratio × tokens` best-matched ones are merged. Images change a little; the infotext records `Token merging
ratio` as A1111 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MergePlan:
    """Which tokens of a (batch, tokens, channels) sequence merge into which, for one attention call."""

    destinations: torch.Tensor  # (D,) token positions that receive merged tokens
    sources: torch.Tensor  # (S,) the other positions
    kept: torch.Tensor  # (B, S - r) indices into `sources` of tokens that stay themselves
    merged: torch.Tensor  # (B, r) indices into `sources` of tokens that are averaged away
    targets: torch.Tensor  # (B, r) index into `destinations` for each merged token

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) → (B, N - r, C): kept sources first, then destinations averaged with their merged sources."""
        channels = x.shape[-1]
        sources, destinations = x[:, self.sources], x[:, self.destinations]
        kept = sources.gather(1, _expand(self.kept, channels))
        moving = sources.gather(1, _expand(self.merged, channels))
        destinations = destinations.scatter_reduce(1, _expand(self.targets, channels), moving, reduce="mean")
        return torch.cat([kept, destinations], dim=1)

    def unmerge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, N - r, C) → (B, N, C): each merged token takes its destination's value."""
        batch, _, channels = y.shape
        kept_count = self.kept.shape[1]
        kept, destinations = y[:, :kept_count], y[:, kept_count:]
        sources = y.new_empty(batch, self.sources.numel(), channels)
        sources.scatter_(1, _expand(self.kept, channels), kept)
        sources.scatter_(
            1, _expand(self.merged, channels), destinations.gather(1, _expand(self.targets, channels))
        )
        out = y.new_empty(batch, self.sources.numel() + self.destinations.numel(), channels)
        out[:, self.sources] = sources
        out[:, self.destinations] = destinations
        return out


def _expand(index: torch.Tensor, channels: int) -> torch.Tensor:
    return index.unsqueeze(-1).expand(-1, -1, channels)


def plan_merge(x: torch.Tensor, height: int, width: int, ratio: float) -> MergePlan | None:
    """The merge plan for tokens `x` laid out as a height × width grid, or None when nothing would merge."""
    positions = torch.arange(height * width, device=x.device).view(height, width)
    destinations = positions[0::2, 0::2].reshape(-1)
    # The other three tokens of each window, by slicing (fixed sizes, so a compiled graph can hold them).
    others = (positions[0::2, 1::2], positions[1::2, 0::2], positions[1::2, 1::2])
    sources = torch.cat([part.reshape(-1) for part in others])
    count = min(int(x.shape[1] * ratio), sources.numel())
    if count <= 0:
        return None
    with torch.no_grad():
        unit = F.normalize(x.float(), dim=-1)
        similarity = unit[:, sources] @ unit[:, destinations].transpose(1, 2)  # (B, S, D)
        best, target = similarity.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)
    merged = order[:, :count]
    return MergePlan(destinations, sources, order[:, count:], merged, target.gather(1, merged))


class TokenMergingProcessor:
    """Wraps a self-attention processor: merge tokens before it, unmerge its output after (full resolution only)."""

    def __init__(self, inner, ratio: float, grid: LatentGrid) -> None:
        self.inner, self.ratio, self.grid = inner, ratio, grid

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs
    ):
        height, width = self.grid.tokens()
        full = hidden_states.ndim == 3 and hidden_states.shape[1] == height * width
        plan = (
            plan_merge(hidden_states, height, width, self.ratio)
            if full and encoder_hidden_states is None
            else None
        )
        if plan is None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        out = self.inner(attn, plan.merge(hidden_states), None, attention_mask, temb, **kwargs)
        return plan.unmerge(out)


@dataclass
class LatentGrid:
    """A model's merge ratio, and the latent size of the UNet call under way (set before each call)."""

    ratio: float
    level: int  # resolution level of the first attention blocks: the latent halved this many times
    size: tuple[int, int] = (0, 0)

    def tokens(self) -> tuple[int, int]:
        """Height and width of the token grid the merging applies to (stride-2 downsampling rounds up)."""
        height, width = self.size
        for _ in range(self.level):
            height, width = (height + 1) // 2, (width + 1) // 2
        return height, width


def apply_token_merging(unet: torch.nn.Module, ratio: float) -> LatentGrid | None:
    """Wrap the self-attention (attn1) processors of the UNet's transformer blocks; returns the grid to set
    before each call, or None for ratio 0. Done once at load time, so compiled graphs include it."""
    if ratio <= 0:
        return None
    types = list(getattr(unet.config, "down_block_types", ()))
    level = next((i for i, kind in enumerate(types) if "CrossAttn" in kind), 0)
    grid = LatentGrid(ratio, level)
    for name, module in unet.named_modules():
        if name.endswith("attn1") and hasattr(module, "set_processor"):
            module.set_processor(TokenMergingProcessor(module.processor, ratio, grid))
    return grid
