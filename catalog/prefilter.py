"""Candidates for exact (case-sensitive or regex) searches from SQLite's trigram index, before the exact check.

An exact search must look at every row in principle; a trigram index (FTS5, `tokenize='trigram'`, any case)
narrows that to rows that contain the substrings the expression or regex cannot match without. The exact
check (`keywords.matches`) still runs on each candidate, so results are unchanged: the prefilter only ever
keeps a superset. Where nothing of 3+ characters is required (`not x`, `^.{2}$`), there is no prefilter and
the search scans the guild's rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable

try:  # Python 3.11+
    from re import _parser as sre_parse  # type: ignore[attr-defined]
    from re._constants import (  # type: ignore[attr-defined]
        BRANCH,
        LITERAL,
        MAX_REPEAT,
        MIN_REPEAT,
        POSSESSIVE_REPEAT,
        SUBPATTERN,
    )
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef]
    from sre_constants import BRANCH, LITERAL, MAX_REPEAT, MIN_REPEAT, SUBPATTERN  # type: ignore[no-redef]

    POSSESSIVE_REPEAT = None

from catalog.keywords import And, Node, Not, Or, Term
from catalog.records import NegativeMode, fts_columns

MIN_LENGTH = 3  # trigrams: shorter strings cannot be looked up


Phrase = Callable[[str], str]


def _usable(text: str) -> bool:
    return len(text) >= MIN_LENGTH and "\n" not in text


def _phrase(text: str, negative: NegativeMode) -> str:
    return f'{fts_columns(negative)} : "{text.replace(chr(34), chr(34) * 2)}"'


def keyword_match(node: Node, negative: NegativeMode, phrase: Phrase | None = None) -> str | None:
    """An FTS5 MATCH expression every row matching the (case-sensitive) expression satisfies, or None.

    `phrase` writes one needed substring (default: an FTS5 phrase of the trigram table); another engine's
    condition (catalog/pg_search.py) joins the same way, with AND, OR and brackets."""
    phrase = phrase or (lambda text: _phrase(text, negative))
    if isinstance(node, Term):
        return phrase(node.text) if node.field is None and _usable(node.text) else None
    if isinstance(node, And):
        parts = [p for p in (keyword_match(item, negative, phrase) for item in node.items) if p]
        return " AND ".join(f"({p})" for p in parts) if parts else None
    if isinstance(node, Or):
        parts = [keyword_match(item, negative, phrase) for item in node.items]
        return " OR ".join(f"({p})" for p in parts) if all(parts) else None  # type: ignore[misc]
    assert isinstance(node, Not)
    return None


def regex_match(pattern: str, negative: NegativeMode, phrase: Phrase | None = None) -> str | None:
    """An FTS5 MATCH expression every text the regex finds a match in satisfies, or None.

    The pattern is RE2's (checked by `catalog.patterns` first) read by Python's parser, which agrees with RE2
    on every literal it can parse except inside RE2's POSIX classes (`[[:alpha:]]x` would look like it needs
    "]x"): those patterns, and any Python cannot parse (`\\pL`, `\\Q…\\E`, deep nesting), get no prefilter."""
    if "[:" in pattern:
        return None
    try:
        return _required(list(sre_parse.parse(pattern)), phrase or (lambda text: _phrase(text, negative)))
    except (re.error, RecursionError, OverflowError, ValueError, TypeError, IndexError):
        return None


def _required(items: list, phrase: Phrase) -> str | None:
    """The substrings a sequence of regex items needs, as an AND of phrases (None: nothing usable)."""
    parts: list[str] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            if _usable(text := "".join(run)):
                parts.append(phrase(text))
            run.clear()

    for op, value in items:
        if op is LITERAL:
            run.append(chr(value))
            continue
        close_run()
        if op is SUBPATTERN:
            inner = _required(list(value[-1]), phrase)
            if inner:
                parts.append(inner)
        elif op is BRANCH:
            alternatives = [_required(list(branch), phrase) for branch in value[1]]
            if alternatives and all(alternatives):
                parts.append(" OR ".join(f"({a})" for a in alternatives))
        elif op in (MAX_REPEAT, MIN_REPEAT, POSSESSIVE_REPEAT) and value[0] >= 1:
            inner = _required(list(value[2]), phrase)
            if inner:
                parts.append(inner)
    close_run()
    return " AND ".join(f"({p})" for p in parts) if parts else None
