"""A1111 prompt editing, alternation and composable diffusion, without torch: which text conditions each step.

Semantics follow AUTOMATIC1111's `modules/prompt_parser.py` (`get_learned_conditioning_prompt_schedules`,
`get_multicond_prompt_list`); the tests pin its answers on a table of prompts. The parser here is our own
recursive descent over the same language:

- prompt editing `[from:to:when]`, `[to:when]` (added at), `[from::when]` (removed at), nested; `when` with a
  `.` is a fraction of the steps, without one a step number;
- alternation `[a|b|c]`: the next option every step;
- `(…)`, `(…:w)` and `[…]` stay as text for the attention parser; `\\[` and friends stay escaped;
- a bracket that opens nothing at the top level is plain text, and a prompt the language cannot read at all
  (a `|` outside brackets, a lone trailing backslash) is used as written, with no schedule.

A schedule is a list of `(until_step, text)`: the text conditions every sampler step `i` (0-based, counted in
UNet evaluations, as A1111 counts them) up to and including `until_step`. Composable diffusion splits a
prompt at the word `AND` into sub-prompts, each with an optional trailing `:weight`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*\]")
_AND = re.compile(r"\bAND\b")
_SUB_PROMPT_WEIGHT = re.compile(r"\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*\Z")
_TRAILING_SPACE = re.compile(r"\s+\Z")
_STOP = frozenset("[]():|\\")  # characters that end a run of plain text


@dataclass(frozen=True)
class Edit:
    """`[before:after:when]`: `before` (None for `[after:when]`) up to step `when`, then `after`."""

    before: tuple[Node, ...] | None
    after: tuple[Node, ...]
    when: str  # the number as written: a `.` makes it a fraction


@dataclass(frozen=True)
class Alternation:
    """`[a|b|c]`: option (step − 1) mod n at each step."""

    options: tuple[tuple[Node, ...], ...]


Node = str | Edit | Alternation


class _Unreadable(Exception):
    """The prompt is outside the language (A1111 then uses it as written)."""


class _Parser:
    """Recursive descent; a construct that does not close is text at the top level and fails when nested."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._constructs: dict[int, tuple[Node | tuple[Node, ...], int] | None] = {}
        self._top_level: dict[int, tuple[Node | tuple[Node, ...], int] | None] = {}

    def top(self) -> tuple[Node, ...]:
        text, items, pos = self.text, [], 0
        # Each construct depends only on what follows it: reading them from the end keeps the recursion shallow.
        for start in range(len(text) - 1, -1, -1):
            if text[start] in "[(":
                self.top_construct(start)
        while pos < len(text):
            char = text[pos]
            if char in "[(":
                found = self.top_construct(pos)
                if found is not None:
                    items.append(found[0])
                    pos = found[1]
                else:
                    items.append(char)
                    pos += 1
            elif char in "]):":
                items.append(char)
                pos += 1
            else:
                nodes, end = self.sequence(pos, plain_only=True)
                if end == pos:  # a `|` or a lone backslash: not in the language
                    raise _Unreadable
                items.extend(nodes)
                pos = end
        return tuple(items)

    def top_construct(self, pos: int) -> tuple[Node | tuple[Node, ...], int] | None:
        """A construct at the top level, or None where its bracket is read as text.

        A1111's parser (lark's Earley, ambiguity resolved) reads a top-level edit as text when an even number
        of loose brackets or colons follows it (`[a:b:5]::` is text, `[a:b:5]:` and `[a:b:5]:::` are edits):
        kept, so that such prompts mean the same in both."""
        if pos in self._top_level:
            return self._top_level[pos]
        found = self.construct(pos)
        if found is not None and isinstance(found[0], Edit):
            run, end = 0, found[1]
            while end < len(self.text) and self.text[end] in "[]():":
                if self.text[end] in "[(" and self.top_construct(end) is not None:
                    break
                run += 1
                end += 1
            if run > 0 and run % 2 == 0:
                found = None
        self._top_level[pos] = found
        return found

    def sequence(self, pos: int, plain_only: bool = False) -> tuple[list[Node], int]:
        """Plain text and constructs (only text with `plain_only`) up to the first character that closes or
        separates."""
        text, items = self.text, []
        while pos < len(text):
            char = text[pos]
            if char in "[(" and not plain_only:
                found = self.construct(pos)
                if found is None:
                    break
                items.append(found[0])
                pos = found[1]
            elif char == "\\":
                if pos + 1 >= len(text) or text[pos + 1] == "\n":
                    break
                items.append(text[pos : pos + 2])
                pos += 2
            elif char in _STOP:
                break
            else:
                end = pos + 1
                while end < len(text) and text[end] not in _STOP:
                    end += 1
                items.append(text[pos:end])
                pos = end
        return items, pos

    def construct(self, pos: int) -> tuple[Node | tuple[Node, ...], int] | None:
        if pos not in self._constructs:
            self._constructs[pos] = self.round(pos) if self.text[pos] == "(" else self.square(pos)
        return self._constructs[pos]

    def at(self, pos: int) -> str:
        return self.text[pos] if pos < len(self.text) else ""

    def round(self, pos: int) -> tuple[tuple[Node, ...], int] | None:
        """`(a)` or `(a:b)`: kept as text, brackets included."""
        first, pos = self.sequence(pos + 1)
        if self.at(pos) == ")":
            return ("(", *first, ")"), pos + 1
        if self.at(pos) != ":":
            return None
        second, pos = self.sequence(pos + 1)
        if self.at(pos) != ")":
            return None
        return ("(", *first, ":", *second, ")"), pos + 1

    def square(self, pos: int) -> tuple[Node | tuple[Node, ...], int] | None:
        first, pos = self.sequence(pos + 1)
        char = self.at(pos)
        if char == "]":
            return ("[", *first, "]"), pos + 1
        if char == "|":
            return self.alternation(first, pos)
        if char != ":":
            return None
        when = _NUMBER.match(self.text, pos + 1)
        if when is not None:
            return Edit(None, tuple(first), when.group(1)), when.end()
        second, pos = self.sequence(pos + 1)
        when = _NUMBER.match(self.text, pos + 1) if self.at(pos) == ":" else None
        if when is None:
            return None
        return Edit(tuple(first), tuple(second), when.group(1)), when.end()

    def alternation(self, first: list[Node], pos: int) -> tuple[Alternation, int] | None:
        options = [tuple(first)]
        while self.at(pos) == "|":
            option, pos = self.sequence(pos + 1)
            options.append(tuple(option))
        if self.at(pos) != "]":
            return None
        return Alternation(tuple(options)), pos + 1


def parse_schedule_syntax(prompt: str) -> tuple[Node, ...] | None:
    """The prompt's tree of texts, edits and alternations; None when the language cannot read it."""
    try:
        return _flatten(_Parser(prompt).top())
    except _Unreadable:
        return None


def _flatten(nodes: Iterable[Node | tuple]) -> tuple[Node, ...]:
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, tuple):
            out.extend(_flatten(node))
        elif isinstance(node, Edit):
            before = None if node.before is None else _flatten(node.before)
            out.append(Edit(before, _flatten(node.after), node.when))
        elif isinstance(node, Alternation):
            out.append(Alternation(tuple(_flatten(option) for option in node.options)))
        else:
            out.append(node)
    return tuple(out)


def _edit_step(when: str, steps: int, base_steps: int, hires: bool) -> int:
    """The last step of an edit's first part; with `hires`, numbers count on from the first pass's steps and
    fractions on from 1.0 (A1111: `[a:b:25]` with 20 + 10 steps switches at the hires pass's step 5)."""
    value = float(when)
    if "." in when:
        value = (value - (1.0 if hires else 0.0)) * steps
    else:
        value -= base_steps if hires else 0
    if not math.isfinite(value):  # 1e999: A1111 fails on it; here it means "never" or "always"
        return steps if value > 0 else -1
    return min(steps, int(value))


def _walk(nodes: tuple[Node, ...]) -> Iterable[Edit | Alternation]:
    for node in nodes:
        if isinstance(node, Edit):
            yield node
            if node.before is not None:
                yield from _walk(node.before)
            yield from _walk(node.after)
        elif isinstance(node, Alternation):
            yield node
            for option in node.options:
                yield from _walk(option)


def _text_at(nodes: tuple[Node, ...], step: int, whens: dict[int, int]) -> str:
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, Edit):
            if step <= whens[id(node)]:
                parts.append(_text_at(node.before or (), step, whens))
            else:
                parts.append(_text_at(node.after, step, whens))
        elif isinstance(node, Alternation):
            parts.append(_text_at(node.options[(step - 1) % len(node.options)], step, whens))
        else:
            parts.append(node)
    return "".join(parts)


def prompt_schedule(prompt: str, steps: int, hires_steps: int | None = None) -> list[tuple[int, str]]:
    """(until_step, text) pairs for a pass of `steps` steps, or for the hires pass of `hires_steps` steps after
    a first pass of `steps` (A1111's `get_learned_conditioning_prompt_schedules`, new scheduling)."""
    tree = parse_schedule_syntax(prompt)
    hires = hires_steps is not None
    total = hires_steps if hires_steps is not None else steps
    if tree is None:
        return [(total, prompt)]
    ends = {total}
    whens: dict[int, int] = {}
    for node in _walk(tree):
        if isinstance(node, Edit):
            whens[id(node)] = _edit_step(node.when, total, steps, hires)
            if whens[id(node)] >= 1:
                ends.add(whens[id(node)])
        else:
            ends.update(range(1, total + 1))
    return [(end, _text_at(tree, end, whens)) for end in sorted(ends)]


def text_at_step(schedule: list[tuple[int, str]], step: int) -> str:
    """The text of a schedule at sampler step `step` (0-based): the first entry whose end is not before it."""
    return next((text for end, text in schedule if step <= end), schedule[0][1])


def split_composable(prompt: str) -> list[tuple[str, float]]:
    """Sub-prompts and weights of composable diffusion: split at the word `AND`, each part's trailing
    `:number` its weight (1 when absent), trailing space dropped (A1111's `get_multicond_prompt_list`)."""
    parts = []
    for part in _AND.split(prompt):
        weight = _SUB_PROMPT_WEIGHT.search(part)
        if weight is None:
            parts.append((_TRAILING_SPACE.sub("", part), 1.0))
        else:
            parts.append((part[: weight.start()], float(weight.group(1))))
    return parts


def is_static(prompt: str, steps: int) -> bool:
    """True when the prompt conditions every step with itself: no edit, alternation or composable part."""
    # A1111 drops a sub-prompt's trailing space; it is no token, so dropping it changes nothing.
    whole = [(_TRAILING_SPACE.sub("", prompt), 1.0)]
    return split_composable(prompt) == whole and prompt_schedule(prompt, steps) == [(steps, prompt)]


def needs_plan(prompt: str, negative: str) -> bool:
    """Whether a prompt pair uses editing, alternation or AND (else one constant conditioning serves every
    step). The step count does not matter: a prompt without the syntax is its own schedule at any count."""
    return not is_static(prompt, 1) or prompt_schedule(negative, 1) != [(1, negative)]
