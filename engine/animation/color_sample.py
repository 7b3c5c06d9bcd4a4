"""Deforum's colour sample: which image a diffused 2D frame's colours are matched to, and when.

Deforum's 2D loop (scripts/deforum_helpers/render.py) keeps one colour sample. By default it is the first frame,
and every later diffused frame is matched to it twice: the moved previous frame before img2img and the result
after. With `legacy_colormatch` (how files older than that option are read) the sample is the first moved frame,
taken as it is (that frame is not matched), and any frame diffused at strength 0 becomes the new sample; frames
are matched before img2img only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ColorMatch:
    """The image of frame `source` (moved by the camera to frame `moved_to` when set) is the colour reference;
    it is matched to before img2img and/or after it."""

    source: int
    moved_to: int | None
    before: bool
    after: bool

    @property
    def when(self) -> str:
        if self.before:
            return "before and after" if self.after else "before"
        return "none"

    @property
    def reference(self) -> str:
        moved = f" moved to frame {self.moved_to}" if self.moved_to is not None else ""
        return f"frame {self.source}{moved}"


def color_match(
    coherence: str, legacy: bool, diffused: Sequence[int], strengths: Sequence[float], key: int
) -> ColorMatch | None:
    """The colour match of diffused frame `key` (None for frame 0 or without colour coherence); `diffused` lists
    the diffused frames in order, `strengths` every frame's strength."""
    if coherence == "None" or key == 0:
        return None
    if not legacy:
        return ColorMatch(0, None, before=True, after=True)
    resets = [frame for frame in diffused if frame < key and strengths[frame] == 0]
    if resets:
        return ColorMatch(resets[-1], None, before=True, after=False)
    first = diffused[1]  # the first diffused frame after frame 0: its moved frame is the sample
    return ColorMatch(0, first, before=key != first, after=False)
