"""A1111 prompt syntax without torch: attention weights, BREAK, extra-network tags and style merging.

Semantics follow AUTOMATIC1111's `modules/prompt_parser.py` (`parse_prompt_attention`),
`modules/extra_networks.py` (`parse_prompt`) and `modules/styles.py` (`merge_prompts`), so prompts copied
from A1111 mean the same here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.errors import InvalidRequest

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK_MARKER: tuple[str, float] = ("BREAK", -1.0)

# The token alternatives of A1111's `re_attention` (v1.6+ form: spaces allowed around an explicit weight).
_ATTENTION_TOKEN = re.compile(
    r"""
    \\\( | \\\) | \\\[ | \\\] | \\\\ | \\      # escapes; a lone backslash is dropped, as in A1111
    | \( | \[                                 # openers
    | :\s*([+-]?[.\d]+)\s*\)                  # explicit weight closing a round bracket
    | \) | \]                                 # closers
    | [^\\()\[\]:]+                           # plain text
    | :                                       # a colon that is not a weight
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")  # A1111's; matched by `_extra_network_tags` in linear time
_TAG_KIND = re.compile(r"\w+:")
_LORA_KINDS = frozenset({"lora", "lyco"})
_FOLDER_HINTS = {
    "lora": "a LoRA in models/Lora",
    "lyco": "a LoRA in models/Lora",
    "hypernet": "a hypernetwork in models/hypernetworks",
}


@dataclass
class _Fragment:
    """One piece of text under construction; markers stand for BREAK and never take a weight."""

    text: str
    weight: float = 1.0
    marker: bool = False


class _AttentionParser:
    """A1111's bracket-stack parser, kept in small steps so each rule is easy to check."""

    def __init__(self) -> None:
        self.fragments: list[_Fragment] = []
        self.round: list[int] = []
        self.square: list[int] = []

    def multiply_from(self, start: int, multiplier: float) -> None:
        """Scale every text fragment from `start` on: that is what closing a bracket means."""
        for fragment in self.fragments[start:]:
            if not fragment.marker:
                fragment.weight *= multiplier

    def add_text(self, text: str) -> None:
        """Append plain text, splitting it at BREAK keywords into fragments and markers."""
        for index, part in enumerate(_BREAK.split(text)):
            if index:
                self.fragments.append(_Fragment(BREAK_MARKER[0], BREAK_MARKER[1], marker=True))
            self.fragments.append(_Fragment(part))

    def close_round(self, multiplier: float) -> None:
        """Close the innermost open round bracket with `multiplier`."""
        self.multiply_from(self.round.pop(), multiplier)

    def feed(self, token: str, weight: str | None) -> None:
        """Apply one token of `_ATTENTION_TOKEN` in A1111's order of rules."""
        if token.startswith("\\"):
            self.fragments.append(_Fragment(token[1:]))
        elif token == "(":
            self.round.append(len(self.fragments))
        elif token == "[":
            self.square.append(len(self.fragments))
        elif weight is not None and self.round:
            self.feed_weight(token, weight)
        elif token == ")" and self.round:
            self.close_round(ROUND_MULTIPLIER)
        elif token == "]" and self.square:
            self.multiply_from(self.square.pop(), SQUARE_MULTIPLIER)
        else:
            self.add_text(token)

    def feed_weight(self, token: str, weight: str) -> None:
        """Close a round bracket with an explicit weight; an unreadable number such as `1.2.3` stays text."""
        try:
            value = float(weight)
        except ValueError:
            self.add_text(token[:-1])
            self.close_round(ROUND_MULTIPLIER)
            return
        self.close_round(value)

    def finish(self) -> list[tuple[str, float]]:
        """Close brackets left open, merge equal-weight neighbours and return (text, weight) pairs."""
        for start in self.round:
            self.multiply_from(start, ROUND_MULTIPLIER)
        for start in self.square:
            self.multiply_from(start, SQUARE_MULTIPLIER)
        return [(f.text, f.weight) for f in _merge_equal_weights(self.fragments)] or [("", 1.0)]


def _merge_equal_weights(fragments: list[_Fragment]) -> list[_Fragment]:
    """Join neighbouring text fragments that carry the same weight; BREAK markers are never joined."""
    merged: list[_Fragment] = []
    for fragment in fragments:
        last = merged[-1] if merged else None
        if last is not None and not last.marker and not fragment.marker and last.weight == fragment.weight:
            last.text += fragment.text
        else:
            merged.append(_Fragment(fragment.text, fragment.weight, fragment.marker))
    return merged


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) pairs with A1111's rules; BREAK becomes the marker ("BREAK", -1).

    `(x)` multiplies by 1.1, `(x:1.3)` by 1.3, `[x]` divides by 1.1, nesting multiplies, the escapes
    `\\(` `\\)` `\\[` `\\]` `\\\\` are literal, brackets left open are closed at the end. One deliberate
    difference from A1111: a BREAK inside brackets stays a marker (A1111 scales its -1, and the keyword then
    leaks into the prompt as text).
    """
    parser = _AttentionParser()
    for match in _ATTENTION_TOKEN.finditer(text):
        parser.feed(match.group(0), match.group(1))
    return parser.finish()


def is_break(fragment: tuple[str, float]) -> bool:
    """Whether a pair from `parse_prompt_attention` is the BREAK marker (start a new 75-token chunk)."""
    return fragment == BREAK_MARKER


@dataclass(frozen=True)
class ExtraNetwork:
    """One `<kind:name:arg:...>` tag from a prompt, e.g. `<lora:film_grain:0.8>`."""

    kind: str
    name: str
    args: tuple[str, ...] = ()

    @property
    def positional(self) -> tuple[str, ...]:
        """Arguments without `key=` (A1111 `ExtraNetworkParams.positional`, minus the name)."""
        return tuple(arg for arg in self.args if len(arg.split("=", 2)) != 2)

    @property
    def named(self) -> dict[str, str]:
        """Arguments written `key=value`, such as LoRA's `te=0.5`."""
        return dict(arg.split("=", 1) for arg in self.args if len(arg.split("=", 2)) == 2)

    @property
    def multiplier(self) -> float:
        """The strength: first positional argument (A1111 LoRA also accepts `te=`), 1.0 when absent."""
        raw = self.named.get("te") if self.kind in _LORA_KINDS else None
        if raw is None:
            raw = self.positional[0] if self.positional else None
        return 1.0 if raw is None else _parse_multiplier(self.kind, self.name, raw)


def _parse_multiplier(kind: str, name: str, raw: str) -> float:
    """Read a tag's strength as a finite float, or refuse with the form that is allowed."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        example = f"<{kind}:{name}:0.8>"
        message = f"<{kind}:{name}:{raw}>: the weight {raw!r} is not a number: write it like {example}"
        raise InvalidRequest("prompt", message)
    return value


def _check_network_name(kind: str, name: str) -> None:
    """Refuse names that could leave the model folder: no folders, no `..`, no hidden files, no NUL."""
    bad = not name or name.startswith(".") or ".." in name or any(c in name for c in "/\\\0")
    if bad:
        where = _FOLDER_HINTS.get(kind, f"a {kind} network")
        message = f"name {name!r} is not allowed: use the file name of {where}, without folders"
        raise InvalidRequest(kind, message)


def _network_from_tag(kind: str, body: str) -> ExtraNetwork:
    """Build and validate one ExtraNetwork from a tag's kind and the text after its first colon."""
    name, *args = body.split(":")
    _check_network_name(kind, name)
    return ExtraNetwork(kind, name, tuple(args))


def _extra_network_tags(prompt: str):
    """(start, end, kind, body) of each `_EXTRA_NETWORK` match, as `finditer` finds them, in linear time.

    The regex itself is quadratic where tags never close (`"<lora:" * 20000`: every `<` scans to the end for
    a `>`). The same matches, found directly: at each `<`, a run of word characters and a colon, then at
    least one character before the next `>`. Once no `>` follows, no later `<` can start a tag either."""
    position = prompt.find("<")
    while position >= 0:
        kind = _TAG_KIND.match(prompt, position + 1)  # \w+ then ":" (\w never matches ":")
        if kind is not None:
            close = prompt.find(">", kind.end())
            if close < 0:
                return
            if close > kind.end():  # [^>]+ needs one character at least
                yield position, close + 1, prompt[position + 1 : kind.end() - 1], prompt[kind.end() : close]
                position = prompt.find("<", close + 1)
                continue
        position = prompt.find("<", position + 1)


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetwork]]:
    """Remove `<kind:name:args>` tags from a prompt (A1111's regex); return the rest and the tags in order."""
    kept: list[str] = []
    networks: list[ExtraNetwork] = []
    last = 0
    for start, end, kind, body in _extra_network_tags(prompt):
        networks.append(_network_from_tag(kind, body))
        kept.append(prompt[last:start])
        last = end
    kept.append(prompt[last:])
    return "".join(kept), networks


def apply_style(prompt: str, style_prompt: str) -> str:
    """Merge a style into a prompt as A1111 does: fill `{prompt}`, else append the style after ", "."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)
