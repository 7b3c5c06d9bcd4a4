"""Words on PostgreSQL: a row's words as a `tsvector`, and a keyword expression as a `tsquery`, with the
results of the SQLite catalog's words index (catalog/words.py), not approximately but exactly.

Tokens. The SQLite words index splits text with FTS5's `unicode61` tokenizer (letters and digits, case folded,
diacritics removed). PostgreSQL's own parsers split differently ("1.2" is one token there, "x-1" three), so
the tokens are made here, by the same tokenizer: SQLite's FTS5 in an in-memory table read back through
`fts5vocab` (for pure ASCII text, whose unicode61 tokens are the runs of ASCII letters and digits lower-cased,
a regular expression does the same faster). The tsvector is then written as a literal, nothing re-tokenized.

Columns. FTS5 keeps each column apart; here each column's tokens carry a mark of their own (none for the
prompt, `~` the negative prompt, `+` the parameters, `=` the field tokens; tokens are letters and digits,
so no mark is ever part of one), with positions counted per column: a phrase never runs from one column into
the next, and PostgreSQL's GIN index answers a word without reading the row again (weights would make it
recheck every match). The field tokens are the words index's (m…, p…, e…, l…: the hex of the lower-case
model, sampler, seed text and each LoRA name), so field queries are index lookups too.

Limits of a tsvector: positions stop at 16,383 and at 256 per word, so past them a phrase is no longer told
apart from its words nearby; a word over 2,000 bytes is kept as a digest ('#…'), found whole, not by prefix.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Sequence

from catalog.keywords import And, Node, Not, Term
from catalog.records import NegativeMode, searched_columns
from core.errors import InvalidRequest

MARKS = {"prompt": "", "negative_prompt": "~", "params": "+"}  # each column's mark (fields: FIELD)
FIELD = "="
LAST = 16383  # PostgreSQL's highest position
LONGEST = 2000  # bytes of a lexeme kept as it is (PostgreSQL refuses 2,048)
NOTHING = "'=x0nothing0x'"  # no row has it: the field tokens are =m…, =p…, =e…, =l…
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")


class _Unicode61:
    """FTS5's unicode61 tokenizer, reached through an in-memory table (one connection, one lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute("CREATE VIRTUAL TABLE texts USING fts5(text, tokenize='unicode61')")
        self._db.execute("CREATE VIRTUAL TABLE found USING fts5vocab(texts, 'instance')")

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        with self._lock, self._db:
            self._db.executemany("INSERT INTO texts (rowid, text) VALUES (?, ?)", enumerate(texts))
            rows = self._db.execute("SELECT doc, offset, term FROM found").fetchall()
            self._db.execute("DELETE FROM texts")
        by_text: list[list[tuple[int, str]]] = [[] for _ in texts]
        for doc, offset, term in rows:
            by_text[doc].append((offset, term))
        return [[term for _, term in sorted(found)] for found in by_text]

    def globbed(self, values: Sequence[str], pattern: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT value FROM json_each(?) WHERE lower(value) GLOB ?",
                (json.dumps(list(values)), pattern),
            ).fetchall()
        return [row[0] for row in rows]


_UNICODE61 = _Unicode61()


def globbed(values: Sequence[str], pattern: str) -> list[str]:
    """The values whose SQLite `lower(value)` matches the GLOB `pattern` (SQLite's own meaning of both)."""
    return _UNICODE61.globbed(values, pattern)


def tokens(texts: Sequence[str]) -> list[list[str]]:
    """The unicode61 tokens of each text, in order (as the SQLite words index makes them)."""
    result: list[list[str] | None] = []
    others: list[int] = []
    for text in texts:
        if text.isascii():
            result.append(_ASCII_TOKEN.findall(text.lower()))
        else:
            others.append(len(result))
            result.append(None)
    if others:
        for index, found in zip(others, _UNICODE61.tokens([texts[i] for i in others]), strict=True):
            result[index] = found
    return result  # type: ignore[return-value]


def lexeme(token: str, mark: str = "") -> str:
    """A column's token as a quoted tsvector/tsquery lexeme (a digest when too long for PostgreSQL)."""
    if len(token.encode()) > LONGEST:
        token = "#" + hashlib.sha256(token.encode()).hexdigest()
    return "'" + (mark + token).replace("\\", "\\\\").replace("'", "''") + "'"


def ascii_lower(text: str) -> str:
    """Lower case as SQLite's lower() makes it (ASCII letters only)."""
    return text.translate(_ASCII_LOWER)


def field_token(letter: str, value: str) -> str:
    return letter + ascii_lower(value).encode().hex()


def scope_token(guild: str, deleted: bool) -> str:
    """The field token of a guild's live (or deleted) images, as in the SQLite words index: with it a count
    is answered by the GIN index alone (no row read where the page is all-visible)."""
    return f"s{guild.encode().hex()}{'d' if deleted else 'l'}"


def scoped(query: str, guild: str, deleted: bool) -> str:
    """A tsquery kept to one guild's live (or deleted) images."""
    return f"{lexeme(scope_token(guild, deleted), FIELD)} & ({query})"


def field_tokens(row: dict) -> list[str]:
    """The field tokens of a row: its scope, then the words index's model, sampler, seed and LoRA names."""
    seed = row.get("seed")
    found = [
        scope_token(row["guild"], row.get("deleted_at") is not None),
        field_token("m", row.get("model") or ""),
        field_token("p", row.get("sampler") or ""),
        "e" + ("" if seed is None else str(int(seed))).encode().hex(),
    ]
    for value in json.loads(row.get("networks") or "[]"):
        if ascii_lower(value[:5]) == "lora:":
            found.append(field_token("l", value[5:]))
    return found


def tsvectors(rows: Sequence[dict]) -> list[str]:
    """The `words` tsvector literal of each row (a dict with the images table's columns)."""
    columns = tuple(MARKS)
    split = tokens([row.get(column) or "" for row in rows for column in columns])
    literals = []
    for number, row in enumerate(rows):
        parts = [
            _column(found, MARKS[column])
            for offset, column in enumerate(columns)
            if (found := split[number * len(columns) + offset])
        ]
        parts.append(" ".join(f"{lexeme(token, FIELD)}:1" for token in field_tokens(row)))
        literals.append(" ".join(parts))
    return literals


def _column(found: list[str], mark: str) -> str:
    """One column's lexemes with their positions (PostgreSQL merges a lexeme's positions, first 256 kept)."""
    if len(found) >= LAST or not all(len(token) < 500 and token.isalnum() for token in found):
        return " ".join(f"{lexeme(token, mark)}:{min(at, LAST)}" for at, token in enumerate(found, 1))
    return " ".join([f"'{mark}{token}':{at}" for at, token in enumerate(found, 1)])


# ----- the keyword expression as a tsquery ----------------------------------------------------------------
def indexed(term: Term) -> bool:
    """Whether a term is answered by the tsvector (all but field terms with wildcards other than a trailing
    `*`, as in catalog/words.py)."""
    if term.field in (None, "neg"):
        return True
    return not any(c in term.text.rstrip("*") for c in "*?")


def is_text(node: Node) -> bool:
    if isinstance(node, Term):
        return indexed(node)
    if isinstance(node, Not):
        return is_text(node.item)
    return all(is_text(item) for item in node.items)


def tsquery(node: Node, negative: NegativeMode) -> str:
    """The tsquery of an expression whose terms are all `indexed`."""
    if isinstance(node, Term):
        return _term(node, negative)
    if isinstance(node, Not):
        return f"!({tsquery(node.item, negative)})"
    joiner = " & " if isinstance(node, And) else " | "
    return "(" + joiner.join(tsquery(item, negative) for item in node.items) + ")"


def _term(term: Term, negative: NegativeMode) -> str:
    if term.field in (None, "neg"):
        columns = ("negative_prompt",) if term.field == "neg" else searched_columns(negative)
        return _words(term.text, [MARKS[c] for c in columns])
    value, prefix = term.text.rstrip("*"), term.text.endswith("*")
    if term.field == "seed":
        try:
            return lexeme("e" + str(int(value)).encode().hex(), FIELD)
        except ValueError:
            return NOTHING
    token = field_token({"model": "m", "sampler": "p", "lora": "l"}[term.field or ""], value)
    return lexeme(token, FIELD) + (":*" if prefix else "")


def _words(text: str, marks: list[str]) -> str:
    """A phrase of words in these columns, as catalog/words.py `_words` asks FTS5 for it."""
    prefix = text.endswith("*")
    if any(c in text.rstrip("*") for c in "*?"):
        raise InvalidRequest("keyword", f"{text!r}: only a trailing * is a wildcard here")
    words = re.findall(r"\w+", text.lower())
    if not words:
        return NOTHING
    found = tokens([" ".join(words)])[0]
    if not found:
        return NOTHING  # FTS5's empty phrase matches nothing
    star = ":*" if prefix and len(words) == 1 else ""
    phrases = [
        " <-> ".join([*(lexeme(t, mark) for t in found[:-1]), lexeme(found[-1], mark) + star])
        for mark in marks
    ]
    return "(" + " | ".join(f"({phrase})" for phrase in phrases) + ")"
