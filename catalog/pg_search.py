"""The PostgreSQL catalog's query planner: a browse query (catalog/records.py) into SQL over `images`, with the
results of the SQLite planner (catalog/search.py) for every filter.

- Words: the keyword expression becomes one `tsquery` on the `words` tsvector (catalog/pg_words.py), GIN
  indexed; a field term with wildcards other than a trailing `*` keeps the SQLite catalog's GLOB, run by
  SQLite itself on the guild's distinct values, so its meaning is the same by construction.
- Exact (case-sensitive or regex): `pg_trgm` keeps the rows holding the substrings a match needs (the same
  needs as SQLite's trigram prefilter, catalog/prefilter.py), then each candidate is checked in Python by the
  very functions SQLite calls (`keywords.sql_keyword`, `patterns.sql_regexp`: RE2, within the search's time
  budget, refused with the same message when it runs out). The filename filter is checked the same way.
  With a capped count (records.BrowseQuery.count_limit) not every candidate is checked (`_walked`): the
  count reads them in the table's order from one cursor until `count_limit()` match, then the page walks
  the sort index in windows with the trigram condition as a filter; where either cannot, the candidates
  are listed in the page's order and checked in growing batches.
- Sorting: NULLs sort lowest and text compares byte by byte, as in SQLite; the random order is the same
  per-id draw as SQLite's, computed here over the matching ids.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from catalog import patterns, pg_words
from catalog.browse_sql import (
    SORT_COLUMNS,
    filter_clauses,
    has_keyword,
    keyword_tree,
    order_by,
    sliced,
    window,
)
from catalog.keywords import And, Node, Not, Or, Term, encode, sql_keyword
from catalog.pg_schema import SEARCHED_TEXT
from catalog.prefilter import keyword_match, regex_match
from catalog.records import BrowseQuery, SortOrder, capped_total, searched_columns

Fetch = Callable[[str, tuple], Awaitable[list[dict]]]
Stream = Callable[[str, tuple, int], AsyncIterator[list[dict]]]  # (statement, arguments, rows per batch)
SCOPED = "words @@ %s::tsquery"  # a words-only keyword: its tsquery holds the guild and state too
CHECK_CHUNK = 5000  # candidates read at a time for the exact check
FIRST_BATCH, LAST_BATCH = 64, 4096  # candidates checked at a time by a capped exact search (doubling)
ASCII_RUN = re.compile("[A-Za-z0-9]{3,}")  # the parts of a needed text looked up by trigrams (`_pieces`)
BY_RUNS = True  # a needed text is looked up by its runs of letters and digits (False: as a whole)
UNINDEXED = f"({SEARCHED_TEXT} || '')"  # the searched text, as a condition no index answers
COUNT_APART = True  # an exact search counts in the table's order and walks the sort index for its page
WALK_FIRST, WALK_ROWS = 2048, 32768  # the sort index's rows walked in the first window, and at most


@patterns.time_bounded
async def page(
    fetch: Fetch, browse: BrowseQuery, stream: Stream | None = None
) -> tuple[list[int], int, int, int, bool]:
    """(the page's ids, its number, the number of pages, the number of matches, whether that number is
    exact: see `records.Page`) for the query (SPEC §4). `stream` reads a statement's rows a batch at a time
    from one cursor (`PgCatalog.batches`), for exact searches (`_walked`)."""
    most = browse.count_limit()  # count up to the cap only: a page needs its rows and "is there more"
    walk = most is not None and browse.sort is not SortOrder.RANDOM
    where, args, counted, check = await _filters(fetch, browse, walk)
    if check is not None:
        return await _walked(fetch, browse, where, args, check, most, stream)
    sql = f"SELECT count(*) AS total FROM images WHERE {counted[0]}"
    if most is not None:
        sql = f"SELECT count(*) AS total FROM (SELECT 1 FROM images WHERE {counted[0]} LIMIT {most}) AS found"
    total, exact = capped_total((await fetch(sql, counted[1]))[0]["total"], most)
    number, pages, offset, limit, descending, backwards = window(browse, total, exact)
    if browse.sort is SortOrder.RANDOM:  # SQLite's order: one draw per id from the query's seed
        found = await fetch(f"SELECT id FROM images WHERE {where}", args)
        draws = {
            row["id"]: random.Random(browse.random_seed * 1_000_003 + row["id"]).random() for row in found
        }
        ordered = sorted(draws, key=draws.__getitem__)
        return ordered[offset : offset + limit], number, pages, total, exact
    sql = f"SELECT id FROM images WHERE {where} ORDER BY {_order(browse.sort, descending)} LIMIT %s OFFSET %s"
    ids = [row["id"] for row in await fetch(sql, (*args, limit, offset))]
    if backwards:
        ids.reverse()
    return ids, number, pages, total, exact


def _order(sort: SortOrder, descending: bool) -> str:
    return order_by(sort, descending, nulls=True)


async def _walked(
    fetch: Fetch, browse: BrowseQuery, where: str, args: tuple, check, most: int, stream: Stream | None = None
):
    """An exact search's page: the same matches, in the same order, as checking every candidate and sorting
    them, but reading only what the page and its capped count (`most`) need.

    With a trigram prefilter and a `stream` (`COUNT_APART`): the count first, from the candidates in the
    table's own order (`_counted`: one trigram lookup, rows fetched only until `most` pass); fewer than `most`
    means every match is known, and only those are sorted. Otherwise the page's matches come from walking
    the sort index a window at a time with the trigram condition as a filter (`_windows`), or, when they
    are sparse there, from the candidates listed in the page's order (`_listed`, also the way without a
    stream). Without a prefilter the guild's sort index is read a batch at a time."""
    (columns, passes), needed = check
    last = browse.page == -1  # the last page: walk from the end
    candidates = f"{where} AND ({needed})" if needed else where
    if needed and stream is not None and COUNT_APART:
        kept = await _counted(stream, candidates, args, columns, passes, most)
        if len(kept) < most:  # every candidate was read: these are all the matches
            sql = (
                f"SELECT id FROM images WHERE id = ANY(%s) ORDER BY {_order(browse.sort, browse.descending)}"
            )
            return sliced(browse, [row["id"] for row in await fetch(sql, (kept,))], len(kept), most, False)
        need = browse.page_size if last else browse.page * browse.page_size
        found = await _windows(fetch, browse, where, args, needed, columns, passes, need)
        if found is None:
            found = await _listed(fetch, browse, candidates, args, columns, passes, need, True)
        return sliced(browse, found, most, most, last)
    target = max(most, browse.page_size) if last else most  # the last page needs its page_size matches
    found = await _listed(fetch, browse, candidates, args, columns, passes, target, bool(needed))
    return sliced(browse, found, len(found), most, last)


async def _listed(fetch: Fetch, browse: BrowseQuery, where: str, args: tuple, columns, passes, target: int,
                  prefiltered: bool) -> list[int]:  # fmt: skip
    """The candidates (`where`) in the page's order (from the end for the last page), checked in growing
    batches until `target` pass. With a prefilter their ids are listed once (the trigram lookup is the costly
    part); without one, the guild's sort index is read a batch at a time."""
    order = _order(browse.sort, browse.descending != (browse.page == -1))
    listed = None
    if prefiltered:
        listed = [
            row["id"] for row in await fetch(f"SELECT id FROM images WHERE {where} ORDER BY {order}", args)
        ]
    found: list[int] = []
    start, size = 0, FIRST_BATCH
    while len(found) < target:
        if listed is not None:
            batch = listed[start : start + size]
        else:
            sql = f"SELECT id FROM images WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s"
            batch = [row["id"] for row in await fetch(sql, (*args, size, start))]
        if not batch:
            break
        selected = ", ".join(["id", *columns])
        rows = await fetch(f"SELECT {selected} FROM images WHERE id = ANY(%s)", (batch,))
        kept = {row["id"] for row in rows if passes(row)}
        found += [image_id for image_id in batch if image_id in kept]
        start, size = start + len(batch), min(2 * size, LAST_BATCH)
    return found


async def _counted(stream: Stream, where: str, args: tuple, columns, passes, most: int) -> list[int]:
    """The ids of the candidates (`where`) that pass, read from one cursor in the table's own order until
    `most` pass: the trigram lookup runs once, and rows are read only as far as needed. (The materialized
    subquery is planned for all its rows, so the lookup is a bitmap scan, never a walk of the table.)"""
    selected = ", ".join(["id", *columns])
    sql = f"WITH candidates AS MATERIALIZED (SELECT {selected} FROM images WHERE {where}) SELECT * FROM candidates"
    kept: list[int] = []
    async with contextlib.aclosing(stream(sql, args, min(max(most, FIRST_BATCH), LAST_BATCH))) as batches:
        async for rows in batches:
            kept += [row["id"] for row in rows if passes(row)]
            if len(kept) >= most:
                break
    return kept


async def _windows(fetch: Fetch, browse: BrowseQuery, where: str, args: tuple, needed: str, columns, passes,
                   need: int) -> list[int] | None:  # fmt: skip
    """The first `need` matches in the page's order (from the end for the last page), found by walking the
    guild's sort index a window of rows at a time (doubling, `WALK_FIRST` first) with the trigram condition
    as a filter on each window; None when `WALK_ROWS` rows hold fewer (the matches are sparse there)."""
    order = _order(browse.sort, browse.descending != (browse.page == -1))
    inner = sorted({"id", SORT_COLUMNS[browse.sort], "prompt", "negative_prompt", "params", *columns})
    sql = (
        f"SELECT {', '.join(inner)} FROM (SELECT {', '.join(inner)} FROM images WHERE {where} ORDER BY {order} "
        f"LIMIT %s OFFSET %s) AS walked WHERE {needed} ORDER BY {order}"
    )
    found: list[int] = []
    start, size = 0, WALK_FIRST
    while start < WALK_ROWS:
        found += [row["id"] for row in await fetch(sql, (*args, size, start)) if passes(row)]
        if len(found) >= need:
            return found
        start += size
        size = min(2 * size, WALK_ROWS - start)
    return None


@patterns.time_bounded
async def matching_ids(fetch: Fetch, browse: BrowseQuery) -> list[int]:
    """Every id matching the query's filters (all pages), in id order."""
    where, args, _, _ = await _filters(fetch, browse)
    return [row["id"] for row in await fetch(f"SELECT id FROM images WHERE {where} ORDER BY id", args)]


async def _filters(fetch: Fetch, browse: BrowseQuery, walk: bool = False):
    """The WHERE clause of the query and its arguments, and the same for counting: when the words' tsquery
    holds the scope, without the guild and state conditions, so the GIN index alone can count. With `walk`,
    an exact keyword's check and its trigram condition are left out of the clause and returned apart
    (`_walked`); otherwise that fourth value is None."""
    clauses, args = filter_clauses(browse, "%s")
    if browse.filename:
        if browse.regex:
            patterns.compiled(browse.filename, browse.case_sensitive, "filename")
        ids = await _checked(fetch, " AND ".join(clauses), tuple(args), ["filename"], _filename_check(browse))
        clauses.append("id = ANY(%s)")
        args.append(ids)
    scoped = False
    check = None
    if has_keyword(browse):
        walk = walk and (browse.regex or browse.case_sensitive)
        clause, more, check = await _keyword(fetch, browse, " AND ".join(clauses), tuple(args), walk)
        if clause:
            clauses.append(clause)
            args += more
        scoped = clause == SCOPED
    where = " AND ".join(clauses), tuple(args)
    return (*where, (" AND ".join(clauses[2:]), tuple(args[1:])) if scoped else where, check)


def _filename_check(browse: BrowseQuery) -> Callable[[dict], int]:
    ends = patterns.deadline()
    return lambda row: patterns.sql_match(
        row["filename"], browse.filename, browse.case_sensitive, browse.regex, ends
    )


async def _checked(fetch: Fetch, where: str, args: tuple, columns: list[str], check) -> list[int]:
    """The ids of the rows matching `where` that pass `check` (Python, row by row), read in chunks."""
    ids: list[int] = []
    after = -1
    selected = ", ".join(["id", *columns])
    while True:
        rows = await fetch(
            f"SELECT {selected} FROM images WHERE {where} AND id > %s ORDER BY id LIMIT %s",
            (*args, after, CHECK_CHUNK),
        )
        ids += [row["id"] for row in rows if check(row)]
        if len(rows) < CHECK_CHUNK:
            return ids
        after = rows[-1]["id"]


async def _keyword(fetch: Fetch, browse: BrowseQuery, where: str, args: tuple, walk: bool = False):
    """The keyword's condition and its arguments: the words' tsquery, or the ids an exact check kept; with
    `walk` (exact searches), no condition and the check apart: ((columns read, the check of one row), the
    trigram candidates' condition, None without one). Otherwise the check is None."""
    node = keyword_tree(browse)
    if not (browse.regex or browse.case_sensitive):
        if pg_words.is_text(node):
            return (
                SCOPED,
                [pg_words.scoped(pg_words.tsquery(node, browse.negative), browse.guild, browse.deleted)],
                None,
            )
        return (*await _words(fetch, node, browse), None)
    columns = searched_columns(browse.negative)
    if browse.regex:
        needed = regex_match(browse.keyword, browse.negative, _any_case)
        ends = patterns.deadline()

        def check(row: dict) -> int:
            text = "\n".join(row[c] for c in columns)
            return patterns.sql_regexp(browse.keyword, text, browse.case_sensitive, ends)

        read = list(columns)
    else:
        needed = keyword_match(node, browse.negative, _exact_case)
        tree = encode(node)

        def check(row: dict) -> int:
            text = "\n".join(row[c] for c in columns)
            seed = "" if row["seed"] is None else str(row["seed"])
            model, sampler = row["model"] or "", row["sampler"] or ""
            fields = (row["negative_prompt"], model, sampler, row["networks"], seed)
            return sql_keyword(tree, text, *fields, browse.case_sensitive, False)

        read = sorted({*columns, "negative_prompt", "model", "sampler", "networks", "seed"})
    if walk:
        return "", [], ((read, check), needed)
    candidates = f"{where} AND ({needed})" if needed else where
    return "id = ANY(%s)", [await _checked(fetch, candidates, args, read, check)], None


# ----- the trigram candidates (a condition every match satisfies: a superset, never fewer) -------------------
def _literal(pattern: str) -> str:
    """A SQL string literal (for a statement run with arguments: `%` doubled for the driver)."""
    return "'" + pattern.replace("'", "''").replace("%", "%%") + "'"


def _like_escaped(char: str) -> str:
    return "\\" + char if char in "%_\\" else char


def _exact_case(text: str) -> str:
    """Rows holding `text` exactly (a superset: see `_pieces`)."""
    return _pieces(text, lambda piece, on: f"{on} LIKE {_literal(_like_pattern(piece, str))}")


def _any_case(text: str) -> str:
    """Rows holding `text` in any case as RE2 folds it (a superset: see `_pieces`): ASCII letters by ILIKE,
    and any character in place of those whose case partners are not ASCII (k: K, s: ſ) and of every
    non-ASCII one."""
    return _pieces(text, lambda piece, on: f"{on} ILIKE {_literal(_like_pattern(piece, _folded))}")


def _folded(char: str) -> str:
    return "_" if char in "kKsS" or not char.isascii() else char


def _like_pattern(text: str, each: Callable[[str], str]) -> str:
    return "%" + "".join(_like_escaped(c) if each(c) == c else each(c) for c in text) + "%"


def _pieces(text: str, holding: Callable[[str, str], str]) -> str:
    """Rows holding `text` (`holding(text, the searched text's SQL)`), looked up in the trigram index by its
    runs of 3 or more ASCII letters and digits (every row holding `text` holds them), `text` itself then
    checked on the rows found, out of the index's sight (`UNINDEXED`). pg_trgm thus looks up the runs'
    inner trigrams only, not those at the edges of words (`  d`, ` dr`, `ed ` for "red dragon"), which are
    in most rows: reading their long lists made the lookup 3× as costly (8,201 index pages against 2,713,
    the same candidates). Without such runs, `text` is looked up as a whole."""
    runs = ASCII_RUN.findall(text) if BY_RUNS else []
    if not runs or runs == [text]:
        return holding(text, SEARCHED_TEXT)
    looked_up = " AND ".join(f"({holding(run, SEARCHED_TEXT)})" for run in runs)
    return f"{looked_up} AND ({holding(text, UNINDEXED)})"


# ----- words --------------------------------------------------------------------------------------------------
async def _words(fetch: Fetch, node: Node, browse: BrowseQuery) -> tuple[str, list]:
    """The SQL condition of a word expression (catalog/words.py `sql_condition`'s meaning)."""
    if pg_words.is_text(node):
        return "words @@ %s::tsquery", [pg_words.tsquery(node, browse.negative)]
    if isinstance(node, Not):
        inner, args = await _words(fetch, node.item, browse)
        return f"NOT ({inner})", args
    if isinstance(node, And | Or):
        parts = [await _words(fetch, item, browse) for item in node.items]
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(p for p, _ in parts) + ")", [a for _, args in parts for a in args]
    assert isinstance(node, Term)
    return await _globbed(fetch, node, browse.guild)


async def _globbed(fetch: Fetch, term: Term, guild: str) -> tuple[str, list]:
    """A field term with wildcards: SQLite's `lower(value) GLOB pattern` over the guild's distinct values."""
    pattern = term.text.lower()
    if term.field == "seed":
        try:
            return "seed = %s", [int(term.text)]
        except ValueError:
            return "FALSE", []
    if term.field == "lora":
        rows = await fetch(
            "SELECT DISTINCT value FROM images, jsonb_array_elements_text(networks::jsonb) AS value "
            "WHERE guild = %s",
            (guild,),
        )
        kept = pg_words.globbed([row["value"] for row in rows], f"lora:{pattern}")
        return ("networks::jsonb ?| %s", [kept]) if kept else ("FALSE", [])
    column = term.field
    rows = await fetch(
        f"SELECT DISTINCT COALESCE({column}, '') AS value FROM images WHERE guild = %s", (guild,)
    )
    kept = pg_words.globbed([row["value"] for row in rows], pattern)
    return f"COALESCE({column}, '') = ANY(%s)", [kept]
