"""A1111 prompt styles: `styles.csv` (name, prompt, negative_prompt) applied as A1111's `merge_prompts` does."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidRequest

MAX_STYLES_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str
    negative_prompt: str


def merge_prompt(style: str, prompt: str) -> str:
    """A style's text with the user's prompt at `{prompt}`, or after the prompt with ", " (A1111's rule)."""
    if "{prompt}" in style:
        return style.replace("{prompt}", prompt)
    if not style.strip():
        return prompt
    if not prompt.strip():
        return style
    return f"{prompt}, {style}"


def load_styles(path: Path) -> dict[str, Style]:
    """The styles of an A1111 `styles.csv` (missing file: none)."""
    if not path.is_file() or path.stat().st_size > MAX_STYLES_BYTES:
        return {}
    styles = {}
    with path.open(encoding="utf-8-sig", newline="") as file:
        for row in csv.DictReader(file):
            name = (row.get("name") or "").strip()
            if name and name != "None":
                styles[name] = Style(name, row.get("prompt") or "", row.get("negative_prompt") or "")
    return styles


def apply_style(styles: dict[str, Style], name: str, prompt: str, negative: str) -> tuple[str, str]:
    """The prompt and negative prompt with the named style merged in."""
    style = styles.get(name) or next(
        (s for s in styles.values() if s.name.casefold() == name.casefold()), None
    )
    if style is None:
        known = ", ".join(list(styles)[:20]) or "none installed (add them to styles.csv)"
        raise InvalidRequest("style", f"no style named {name!r}; known: {known}")
    return merge_prompt(style.prompt, prompt), merge_prompt(style.negative_prompt, negative)
