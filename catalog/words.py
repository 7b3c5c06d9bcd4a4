"""Word search inside SQLite (FTS5): the other engine behind the text-index interface.

Whoosh answers a keyword by handing every matching image id to Python (about 2.5 µs each), so a common word
in a million-image catalog costs half a second before SQLite even sorts. Here the same expression becomes an
FTS5 query that SQLite evaluates in C, joined to the images table without crossing into Python; each row's
`scope` token (guild and live/deleted) is indexed with the words, so counting a guild's matches is a pure
index operation. Model, sampler, seed and LoRA names are indexed as one exact token each, so field queries
stay in the index too (only wildcards other than a trailing `*` fall back to SQL). The table is kept by
triggers, so adding, deleting and restoring images need nothing from Python.

Words are unicode61 tokens (letters and digits; case and punctuation ignored), as Whoosh's analyzer makes
them; a trailing `*` matches a prefix.
"""

from __future__ import annotations

import re

from catalog.keywords import And, Node, Not, Or, Term
from catalog.records import NegativeMode, fts_columns
from core.errors import InvalidRequest

SCOPE_SQL = "'s' || hex({row}.guild) || CASE WHEN {row}.deleted_at IS NULL THEN 'l' ELSE 'd' END"
# model, sampler, seed and LoRAs as one exact token each (m…, p…, e…, l…: hex of the lower-case name).
FIELDS_SQL = (
    "'m' || hex(lower(COALESCE({row}.model, ''))) || ' p' || hex(lower(COALESCE({row}.sampler, ''))) "
    "|| ' e' || hex(COALESCE({row}.seed, '')) || COALESCE((SELECT ' ' || group_concat('l' || "
    "hex(lower(substr(value, 6))), ' ') FROM json_each({row}.networks) WHERE value LIKE 'lora:%'), '')"
)
COLUMNS = "scope, fields, prompt, negative_prompt, params"


def _values(row: str) -> str:
    texts = f"{row}.prompt, {row}.negative_prompt, {row}.params"
    return f"{SCOPE_SQL.format(row=row)}, {FIELDS_SQL.format(row=row)}, {texts}"


POPULATE = f"INSERT INTO images_words (rowid, {COLUMNS}) SELECT id, {_values('images')} FROM images"
MIGRATION: tuple[str, ...] = (
    f"CREATE VIRTUAL TABLE images_words USING fts5({COLUMNS}, tokenize='unicode61')",
    "CREATE TRIGGER images_words_insert AFTER INSERT ON images BEGIN "
    f"INSERT INTO images_words (rowid, {COLUMNS}) VALUES (new.id, {_values('new')}); END",
    "CREATE TRIGGER images_words_delete AFTER DELETE ON images BEGIN "
    "DELETE FROM images_words WHERE rowid = old.id; END",
    "CREATE TRIGGER images_words_update AFTER UPDATE OF guild, deleted_at, prompt, negative_prompt, params, "
    "model, sampler, seed, networks ON images BEGIN DELETE FROM images_words WHERE rowid = old.id; "
    f"INSERT INTO images_words (rowid, {COLUMNS}) VALUES (new.id, {_values('new')}); END",
    POPULATE,
    # How many images each scope holds, so a count can take the cheaper side (see `count_sql`).
    "CREATE TABLE scope_sizes (scope TEXT PRIMARY KEY, images INTEGER NOT NULL)",
    f"INSERT INTO scope_sizes SELECT {SCOPE_SQL.format(row='images')} AS s, COUNT(*) FROM images GROUP BY s",
    "CREATE TRIGGER scope_sizes_insert AFTER INSERT ON images BEGIN "
    f"INSERT INTO scope_sizes VALUES ({SCOPE_SQL.format(row='new')}, 1) "
    "ON CONFLICT (scope) DO UPDATE SET images = images + 1; END",
    "CREATE TRIGGER scope_sizes_delete AFTER DELETE ON images BEGIN "
    f"UPDATE scope_sizes SET images = images - 1 WHERE scope = {SCOPE_SQL.format(row='old')}; END",
    "CREATE TRIGGER scope_sizes_update AFTER UPDATE OF guild, deleted_at ON images BEGIN "
    f"UPDATE scope_sizes SET images = images - 1 WHERE scope = {SCOPE_SQL.format(row='old')}; "
    f"INSERT INTO scope_sizes VALUES ({SCOPE_SQL.format(row='new')}, 1) "
    "ON CONFLICT (scope) DO UPDATE SET images = images + 1; END",
)
MAX_OTHER_SCOPES = 32  # beyond this many other guilds, count the scope directly
NOTHING = '"x0nothing0x"'  # a token no image has: the words of an empty term match nothing (as in Whoosh)


def scope(guild: str, deleted: bool) -> str:
    """The scope token of a guild's live (or deleted) images, as the triggers write it."""
    return f"s{guild.encode().hex().upper()}{'d' if deleted else 'l'}"


def _words(text: str, columns: str) -> str:
    prefix = text.endswith("*")
    if any(c in text.rstrip("*") for c in "*?"):
        raise InvalidRequest("keyword", f"{text!r}: only a trailing * is a wildcard here")
    words = re.findall(r"\w+", text.lower())
    if not words:
        return f"scope : {NOTHING}"
    phrase = " ".join(words)
    return f'{columns} : "{phrase}"' + (" *" if prefix and len(words) == 1 else "")


def _token(prefix: str, value: str) -> str:
    lowered = "".join(c.lower() if c.isascii() else c for c in value)  # as SQLite's lower()
    return prefix + lowered.encode().hex().upper()


def _field_words(term: Term) -> str | None:
    """The FTS5 query of a field term, or None when it needs SQL (wildcards other than a trailing *)."""
    value, prefix = term.text, term.text.endswith("*")
    if any(c in value.rstrip("*") for c in "*?"):
        return None
    value = value.rstrip("*")
    if term.field == "seed":
        try:
            return f"fields : {_token('e', str(int(value)))}"
        except ValueError:
            return f"scope : {NOTHING}"
    letter = {"model": "m", "sampler": "p", "lora": "l"}[term.field or ""]
    token = _token(letter, value)
    return f'fields : "{token}" *' if prefix else f"fields : {token}"


def is_text(node: Node) -> bool:
    """Whether the whole expression can be answered by the words index alone."""
    if isinstance(node, Term):
        return node.field in (None, "neg") or _field_words(node) is not None
    if isinstance(node, Not):
        return is_text(node.item)
    return all(is_text(item) for item in node.items)


def fts_query(node: Node, negative: NegativeMode, within: str) -> str:
    """The FTS5 MATCH expression of a words-only expression; `within` is the scope token (`not x` means the
    scope's images without x)."""
    if isinstance(node, Term):
        if node.field in ("model", "sampler", "seed", "lora"):
            found = _field_words(node)
            assert found is not None
            return found
        return _words(node.text, "{negative_prompt}" if node.field == "neg" else fts_columns(negative))
    if isinstance(node, Not):
        return f"(scope : {within} NOT ({fts_query(node.item, negative, within)}))"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(fts_query(item, negative, within) for item in node.items) + ")"


def count_queries(
    node: Node, negative: NegativeMode, within: str, sizes: dict[str, int]
) -> list[tuple[int, str]]:
    """The count of a guild's matches as a signed sum of FTS5 counts (None-free expressions only).

    Intersecting with the scope token reads its whole list, which for a guild holding most of the catalog is
    most of the catalog. Then it is cheaper to count the words alone and subtract their matches in the other,
    smaller scopes."""
    direct = [(1, f"scope : {within} AND {fts_query(node, negative, within)}")]
    others = [scope for scope, images in sizes.items() if scope != within and images > 0]
    if _has_not(node) or sizes.get(within, 0) * 2 <= sum(sizes.values()) or len(others) > MAX_OTHER_SCOPES:
        return direct
    text = fts_query(node, negative, within)
    if not others:
        return [(1, text)]
    elsewhere = " OR ".join(f"scope : {scope}" for scope in others)
    return [(1, text), (-1, f"({text}) AND ({elsewhere})")]


def _has_not(node: Node) -> bool:
    if isinstance(node, Not):
        return True
    return isinstance(node, And | Or) and any(_has_not(item) for item in node.items)


def sql_condition(node: Node, negative: NegativeMode) -> tuple[str, list]:
    """The SQL condition (on the images table) of any expression; its word parts are FTS5 lookups without
    the scope token (SQL filters guild and deletion, and a lookup of one word reads only that word's list)."""
    if is_text(node) and not _has_not(node):
        match = fts_query(node, negative, "")
        return "id IN (SELECT rowid FROM images_words WHERE images_words MATCH ?)", [match]
    if isinstance(node, Not):
        inner, args = sql_condition(node.item, negative)
        return f"NOT ({inner})", args
    if isinstance(node, And | Or):
        parts = [sql_condition(item, negative) for item in node.items]
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(p for p, _ in parts) + ")", [a for _, args in parts for a in args]
    if is_text(node):
        return sql_condition(node, negative)  # unreachable: a Term has no Not
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
