"""The PostgreSQL catalog's query planner: a browse query (catalog/records.py) into SQL over `images`, with the
results of the SQLite planner (catalog/search.py) for every filter.

- Words: the keyword expression becomes one `tsquery` on the `words` tsvector (catalog/pg_words.py), GIN
  indexed; a field term with wildcards other than a trailing `*` keeps the SQLite catalog's GLOB, run by
  SQLite itself on the guild's distinct values, so its meaning is the same by construction.
- Exact (case-sensitive or regex): `pg_trgm` keeps the rows holding the substrings a match needs (the same
  needs as SQLite's trigram prefilter, catalog/prefilter.py), then each candidate is checked in Python by the
  very functions SQLite calls (`keywords.sql_keyword`, `patterns.sql_regexp`: RE2, within the search's time
  budget, refused with the same message when it runs out). The filename filter is checked the same way.
  With a capped count (records.BrowseQuery.count_limit) the candidates are read in the page's sort order
  and checked in growing batches until `count_limit()` match (`_walked`), not all of them.
- Sorting: NULLs sort lowest and text compares byte by byte, as in SQLite; the random order is the same
  per-id draw as SQLite's, computed here over the matching ids.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from catalog import patterns, pg_words
from catalog.keywords import And, Node, Not, Or, Term, check_patterns, encode, parse_keywords, sql_keyword
from catalog.pg_schema import SEARCHED_TEXT
from catalog.prefilter import keyword_match, regex_match
from catalog.records import BrowseQuery, NegativeMode, SortOrder, capped_total, searched_columns
from core.errors import InvalidRequest

Fetch = Callable[[str, tuple], Awaitable[list[dict]]]
SORT_COLUMNS = {
    SortOrder.DATE: "created",
    SortOrder.RANK: "rank_mean",
    SortOrder.SEED: "seed",
    SortOrder.STEPS: "steps",
    SortOrder.CFG: "cfg",
    SortOrder.MODEL: "model",
}
SCOPED = "words @@ %s::tsquery"  # a words-only keyword: its tsquery holds the guild and state too
CHECK_CHUNK = 5000  # candidates read at a time for the exact check
FIRST_BATCH, LAST_BATCH = 64, 4096  # candidates checked at a time by a capped exact search (doubling)


@patterns.time_bounded
async def page(fetch: Fetch, browse: BrowseQuery) -> tuple[list[int], int, int, int, bool]:
    """(the page's ids, its number, the number of pages, the number of matches, whether that number is
    exact: see `records.Page`) for the query (SPEC §4)."""
    most = browse.count_limit()  # count up to the cap only: a page needs its rows and "is there more"
    walk = most is not None and browse.sort is not SortOrder.RANDOM
    where, args, counted, check = await _filters(fetch, browse, walk)
    if check is not None:
        return await _walked(fetch, browse, where, args, check, most)
    sql = f"SELECT count(*) AS total FROM images WHERE {counted[0]}"
    if most is not None:
        sql = f"SELECT count(*) AS total FROM (SELECT 1 FROM images WHERE {counted[0]} LIMIT {most}) AS found"
    total, exact = capped_total((await fetch(sql, counted[1]))[0]["total"], most)
    number, pages = _numbered(browse, total, exact)
    offset, limit = (number - 1) * browse.page_size, browse.page_size
    if browse.sort is SortOrder.RANDOM:  # SQLite's order: one draw per id from the query's seed
        found = await fetch(f"SELECT id FROM images WHERE {where}", args)
        draws = {
            row["id"]: random.Random(browse.random_seed * 1_000_003 + row["id"]).random() for row in found
        }
        ordered = sorted(draws, key=draws.__getitem__)
        return ordered[offset : offset + limit], number, pages, total, exact
    descending = browse.descending
    backwards = exact and offset > total // 2
    if number == -1:  # the last page past the cap: the last `limit` matches, read from the end
        offset, descending, backwards = 0, not descending, True
    elif backwards:  # a deep page is near the other end: read it from there, then turn it round
        limit = min(limit, total - offset)
        offset, descending = total - offset - limit, not descending
    sql = f"SELECT id FROM images WHERE {where} ORDER BY {_order(browse.sort, descending)} LIMIT %s OFFSET %s"
    ids = [row["id"] for row in await fetch(sql, (*args, limit, offset))]
    if backwards:
        ids.reverse()
    return ids, number, pages, total, exact


def _numbered(browse: BrowseQuery, total: int, exact: bool) -> tuple[int, int]:
    """(the page's number, the number of pages) for `total` matches (more when not `exact`: the last page is
    then -1, unnumbered); a page past the end is refused."""
    pages = max(1, -(-total // browse.page_size))
    if browse.page == -1 and not exact:
        return -1, pages
    number = pages if browse.page == -1 else browse.page
    if not 1 <= number <= pages:
        raise InvalidRequest("page", f"page {browse.page} does not exist; there are {pages} page(s)")
    return number, pages


def _order(sort: SortOrder, descending: bool) -> str:
    direction = "DESC NULLS LAST" if descending else "ASC NULLS FIRST"
    return f"{SORT_COLUMNS[sort]} {direction}, id {'DESC' if descending else 'ASC'}"


async def _walked(fetch: Fetch, browse: BrowseQuery, where: str, args: tuple, check, most: int):
    """An exact search's page: its candidates (`where`) in the page's order, checked in batches until `most`
    match; the same matches, in the same order, as checking every candidate and sorting them. With a trigram
    prefilter the candidates' ids are listed once (the prefilter is the costly part); without one, the
    guild's sort index is read a batch at a time."""
    (columns, passes), prefiltered = check
    last = browse.page == -1  # the last page: walk from the end
    order = _order(browse.sort, browse.descending != last)
    listed = None
    if prefiltered:
        listed = [
            row["id"] for row in await fetch(f"SELECT id FROM images WHERE {where} ORDER BY {order}", args)
        ]
    found: list[int] = []
    start, size = 0, FIRST_BATCH
    while len(found) < most:
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
    total, exact = capped_total(min(len(found), most), most)
    if last:  # every match (then numbered from the start), or the last page's (read backwards)
        found = found[::-1] if exact else found[: browse.page_size][::-1]
    number, pages = _numbered(browse, total, exact)
    offset = max(0, (number - 1) * browse.page_size)
    return found[offset : offset + browse.page_size], number, pages, total, exact


@patterns.time_bounded
async def matching_ids(fetch: Fetch, browse: BrowseQuery) -> list[int]:
    """Every id matching the query's filters (all pages), in id order."""
    where, args, _, _ = await _filters(fetch, browse)
    return [row["id"] for row in await fetch(f"SELECT id FROM images WHERE {where} ORDER BY id", args)]


async def _filters(fetch: Fetch, browse: BrowseQuery, walk: bool = False):
    """The WHERE clause of the query and its arguments, and the same for counting: when the words' tsquery
    holds the scope, without the guild and state conditions, so the GIN index alone can count. With `walk`,
    an exact keyword's check is left out of the clause (which keeps its candidates) and returned apart
    (`_walked`); otherwise that fourth value is None."""
    if browse.page_size < 1 or browse.page_size > 100:
        raise InvalidRequest("page_size", f"{browse.page_size} is not from 1 to 100")
    clauses = ["guild = %s", "deleted_at IS NOT NULL" if browse.deleted else "deleted_at IS NULL"]
    args: list = [browse.guild]
    if not browse.include_nsfw:
        clauses.append("nsfw = 0")
    if browse.negative is NegativeMode.NONE:
        clauses.append("negative_prompt = ''")
    if browse.author:
        clauses.append("author = %s")
        args.append(browse.author)
    if browse.model:
        clauses.append("model = %s")
        args.append(browse.model)
    if browse.favourites_of:
        clauses.append('id IN (SELECT image_id FROM favourites WHERE "user" = %s)')
        args.append(browse.favourites_of)
    if browse.gallery is not None:
        clauses.append("id IN (SELECT image_id FROM gallery_images WHERE gallery_id = %s)")
        args.append(browse.gallery)
    rank = browse.rank
    if rank.kind == "none":
        clauses.append("rank_count = 0")
    elif rank.kind == "exact":
        clauses.append("rank_mean >= %s AND rank_mean < %s")  # (unrated images have no mean)
        args += [rank.low - 0.5, rank.low + 0.5]
    elif rank.kind == "range":
        clauses.append("rank_mean BETWEEN %s AND %s")
        args += [rank.low, rank.high]
    if browse.filename:
        if browse.regex:
            patterns.compiled(browse.filename, browse.case_sensitive, "filename")
        ids = await _checked(fetch, " AND ".join(clauses), tuple(args), ["filename"], _filename_check(browse))
        clauses.append("id = ANY(%s)")
        args.append(ids)
    scoped = False
    check = None
    if browse.keyword if browse.regex else browse.keyword.strip():
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
    `walk` (exact searches), the trigram candidates' condition (empty without one) and the check apart:
    ((columns read, the check of one row), whether there is a prefilter). Otherwise the check is None."""
    if browse.regex:
        node: Node = Term(browse.keyword)  # the whole keyword is one regular expression, as in A1111
        check_patterns(node, browse.case_sensitive)
    else:
        node = parse_keywords(browse.keyword)
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
        return f"({needed})" if needed else "", [], ((read, check), bool(needed))
    candidates = f"{where} AND ({needed})" if needed else where
    return "id = ANY(%s)", [await _checked(fetch, candidates, args, read, check)], None


# ----- the trigram candidates (a condition every match satisfies: a superset, never fewer) -------------------
def _literal(pattern: str) -> str:
    """A SQL string literal (for a statement run with arguments: `%` doubled for the driver)."""
    return "'" + pattern.replace("'", "''").replace("%", "%%") + "'"


def _like_escaped(char: str) -> str:
    return "\\" + char if char in "%_\\" else char


def _exact_case(text: str) -> str:
    """Rows holding `text` exactly."""
    return f"{SEARCHED_TEXT} LIKE {_literal('%' + ''.join(map(_like_escaped, text)) + '%')}"


def _any_case(text: str) -> str:
    """Rows holding `text` in any case as RE2 folds it: ASCII letters by ILIKE, and any character in place of
    those whose case partners are not ASCII (k: K, s: ſ) and of every non-ASCII one."""
    pattern = "".join("_" if c in "kKsS" or not c.isascii() else _like_escaped(c) for c in text)
    return f"{SEARCHED_TEXT} ILIKE {_literal('%' + pattern + '%')}"


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
