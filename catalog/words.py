"""Word search inside SQLite (FTS5): the other engine behind the text-index interface.

Whoosh answers a keyword by handing every matching image id to Python (about 2.5 µs each), so a common word
in a million-image catalog costs half a second before SQLite even sorts. Here the same expression becomes an
FTS5 query that SQLite evaluates in C, joined to the images table without crossing into Python; each row's
`scope` token (guild and live/deleted) is indexed with the words, so counting a guild's matches is a pure
index operation. Field queries (`model:`, `sampler:`, `seed:`, `lora:`) become SQL predicates. The table is
kept by triggers, so adding, deleting and restoring images need nothing from Python.

Words are unicode61 tokens (letters and digits; case and punctuation ignored), as Whoosh's analyzer makes
them; a trailing `*` matches a prefix.
"""

from __future__ import annotations

import re

from catalog.keywords import And, Node, Not, Or, Term
from catalog.records import NegativeMode
from engine.errors import InvalidRequest

SCOPE_SQL = "'s' || hex({row}.guild) || CASE WHEN {row}.deleted_at IS NULL THEN 'l' ELSE 'd' END"
MIGRATION: tuple[str, ...] = (
    "CREATE VIRTUAL TABLE images_words USING fts5(scope, prompt, negative_prompt, params, tokenize='unicode61')",
    "CREATE TRIGGER images_words_insert AFTER INSERT ON images BEGIN "
    "INSERT INTO images_words (rowid, scope, prompt, negative_prompt, params) "
    f"VALUES (new.id, {SCOPE_SQL.format(row='new')}, new.prompt, new.negative_prompt, new.params); END",
    "CREATE TRIGGER images_words_delete AFTER DELETE ON images BEGIN "
    "DELETE FROM images_words WHERE rowid = old.id; END",
    "CREATE TRIGGER images_words_update AFTER UPDATE OF guild, deleted_at, prompt, negative_prompt, params "
    f"ON images BEGIN UPDATE images_words SET scope = {SCOPE_SQL.format(row='new')}, prompt = new.prompt, "
    "negative_prompt = new.negative_prompt, params = new.params WHERE rowid = new.id; END",
    "INSERT INTO images_words (rowid, scope, prompt, negative_prompt, params) "
    f"SELECT id, {SCOPE_SQL.format(row='images')}, prompt, negative_prompt, params FROM images",
)
NOTHING = '"x0nothing0x"'  # a token no image has: the words of an empty term match nothing (as in Whoosh)


def scope(guild: str, deleted: bool) -> str:
    """The scope token of a guild's live (or deleted) images, as the triggers write it."""
    return f"s{guild.encode().hex().upper()}{'d' if deleted else 'l'}"


def _columns(negative: NegativeMode) -> str:
    if negative is NegativeMode.ONLY:
        return "{negative_prompt}"
    if negative is NegativeMode.YES:
        return "{prompt negative_prompt params}"
    return "{prompt params}"


def _words(text: str, columns: str) -> str:
    prefix = text.endswith("*")
    if any(c in text.rstrip("*") for c in "*?"):
        raise InvalidRequest("keyword", f"{text!r}: only a trailing * is a wildcard here")
    words = re.findall(r"\w+", text.lower())
    if not words:
        return f"scope : {NOTHING}"
    phrase = " ".join(words)
    return f'{columns} : "{phrase}"' + (" *" if prefix and len(words) == 1 else "")


def is_text(node: Node) -> bool:
    """Whether the whole expression is about words (no model:/sampler:/seed:/lora: field)."""
    if isinstance(node, Term):
        return node.field in (None, "neg")
    if isinstance(node, Not):
        return is_text(node.item)
    return all(is_text(item) for item in node.items)


def fts_query(node: Node, negative: NegativeMode, within: str) -> str:
    """The FTS5 MATCH expression of a words-only expression; `within` is the scope token (`not x` means the
    scope's images without x)."""
    if isinstance(node, Term):
        return _words(node.text, "{negative_prompt}" if node.field == "neg" else _columns(negative))
    if isinstance(node, Not):
        return f"(scope : {within} NOT ({fts_query(node.item, negative, within)}))"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(fts_query(item, negative, within) for item in node.items) + ")"


def sql_condition(node: Node, negative: NegativeMode, within: str) -> tuple[str, list]:
    """The SQL condition (on the images table) of any expression; its word parts are FTS5 lookups."""
    if is_text(node):
        match = f"scope : {within} AND {fts_query(node, negative, within)}"
        return "id IN (SELECT rowid FROM images_words WHERE images_words MATCH ?)", [match]
    if isinstance(node, Not):
        inner, args = sql_condition(node.item, negative, within)
        return f"NOT ({inner})", args
    if isinstance(node, And | Or):
        parts = [sql_condition(item, negative, within) for item in node.items]
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(p for p, _ in parts) + ")", [a for _, args in parts for a in args]
    return _field(node)


def _field(term: Term) -> tuple[str, list]:
    pattern = term.text.lower()
    if term.field == "seed":
        try:
            return "seed = ?", [int(term.text)]
        except ValueError:
            return "0", []
    if term.field == "lora":
        return "EXISTS (SELECT 1 FROM json_each(networks) WHERE lower(value) GLOB ?)", [f"lora:{pattern}"]
    return f"lower(COALESCE({term.field}, '')) GLOB ?", [pattern]  # model, sampler: the whole name, any case
