"""Catalog.search's query planner: a browse query (catalog/records.py) into SQL over `images`.

Filters are SQL conditions on the guild's rows; a keyword is matched by the text index (Whoosh's ids, or the
FTS5 words table joined in SQL), or exactly (case-sensitive or a regular expression) row by row on the texts
`keywords.matches` reads, once SQLite's trigram index has kept only the rows holding the substrings needed
(catalog/prefilter.py). How a page is read depends on how many images match (`page`). With a capped count
(records.BrowseQuery.count_limit), an exact search walks its candidates in the page's sort order and checks
them in growing batches, stopping once it holds `count_limit()` matches (`_walked`): enough for the page and
its capped count, without checking every candidate.
"""

from __future__ import annotations

import json
import random

from catalog import derived, patterns, words
from catalog.browse_sql import filter_clauses, has_keyword, keyword_tree, order_by, sliced, window
from catalog.keywords import Node, encode
from catalog.prefilter import keyword_match, regex_match
from catalog.records import BrowseQuery, Page, SortOrder, capped_total, searched_columns
from catalog.sqlite_words import SqliteWords
from catalog.store import Store

SMALL_RESULT = 2_000  # a keyword's matches below this are sorted; above, the sort index is walked
LARGE_RESULT = 100_000  # from this many matches, the walk probes the words index instead of listing them
FIRST_BATCH, LAST_BATCH = 64, 4096  # candidates checked at a time by an exact search's walk (doubling)
PREFILTERED = "id IN (SELECT rowid FROM images_text WHERE images_text MATCH ?)"
WORDS_IN = "id IN (SELECT rowid FROM images_words WHERE images_words MATCH ?)"
WORDS_EXISTS = "EXISTS (SELECT 1 FROM images_words WHERE images_words MATCH ? AND rowid = images.id)"
COUNT_WORDS = "SELECT COUNT(*) FROM images_words WHERE images_words MATCH ?"
COUNT_WORDS_UP_TO = "SELECT COUNT(*) FROM (SELECT 1 FROM images_words WHERE images_words MATCH ? LIMIT ?)"


@derived.recovering
@patterns.time_bounded
async def page(store: Store, browse: BrowseQuery) -> Page:
    """One page of the guild's images matching every filter of the query (SPEC §4)."""
    most = browse.count_limit()  # count up to the cap only: a page needs its rows and "is there more"
    walk = most is not None and browse.sort is not SortOrder.RANDOM
    where, args, count_match, check = await _filters(store, browse, walk)
    if check is not None:
        return await _walked(store, browse, where, args, check, most)
    keyword = has_keyword(browse)
    # With a keyword, count from its matches (+guild: not by walking the guild's index past every row).
    counted = where.replace("guild = ?", "+guild = ?", 1) if keyword else where
    if count_match is not None:  # the words index counts the guild's matches by itself
        total = await _count_words(store, browse, count_match, most)
    else:
        sql = f"SELECT COUNT(*) FROM images WHERE {counted}"
        if most is not None:
            sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM images WHERE {counted} LIMIT {most})"
        async with store.db.execute(sql, args) as cursor:
            total = (await cursor.fetchone())[0]
    total, exact = capped_total(total, most)
    page, pages, offset, limit, descending, backwards = window(browse, total, exact)
    if browse.sort is SortOrder.RANDOM:
        order = "salon_random(id)"
        await store.db.create_function(
            "salon_random", 1, lambda i: random.Random(browse.random_seed * 1_000_003 + i).random()
        )
    else:
        order = order_by(browse.sort, descending)
    # Few matches: sort them (driven by the keyword's ids); many: walk the sort index and stop early.
    # Only ids are sorted (a sorter holding whole rows, infotexts included, was 4× slower).
    paged = where
    if keyword and exact and total < SMALL_RESULT:  # (a count that stopped at its cap found more)
        paged = counted
    elif total >= LARGE_RESULT:  # probe the words index row by row as the walk goes, not list every match
        paged = where.replace(WORDS_IN, WORDS_EXISTS)
    # More matches than the cap: walking the date index finds a page soon, sorting a rank range takes long.
    if not exact and browse.sort is SortOrder.DATE:
        paged = paged.replace("rank_mean BETWEEN ?", "+rank_mean BETWEEN ?").replace(
            "rank_mean >= ?", "+rank_mean >= ?"
        )
    sql = f"SELECT id FROM images WHERE {paged} ORDER BY {order} LIMIT ? OFFSET ?"
    async with store.db.execute(sql, (*args, limit, offset)) as cursor:
        ids = [row[0] for row in await cursor.fetchall()]
    if backwards:
        ids.reverse()
    return Page(tuple(await store.records(ids)), page, pages, total, exact)


async def _walked(store: Store, browse: BrowseQuery, where: str, args: tuple, check, most: int) -> Page:
    """An exact search's page: its candidates (`where`) read in the page's order, checked in batches until
    `most` match; the same matches, in the same order, as checking every candidate and sorting them."""
    clause, check_args = check
    if PREFILTERED in where:  # few candidates: list them from the trigram index and sort their ids, rather
        # than walk the guild's sort index probing them (2× slower at 1M images)
        where = where.replace("guild = ?", "+guild = ?", 1).replace("deleted_at IS", "+deleted_at IS", 1)
    found: list[int] = []
    last = browse.page == -1  # the last page: walk from the end
    sql = f"SELECT id FROM images WHERE {where} ORDER BY {order_by(browse.sort, browse.descending != last)}"
    passing = f"SELECT id FROM images WHERE id IN (SELECT value FROM json_each(?)) AND {clause}"
    size = FIRST_BATCH
    target = max(most, browse.page_size) if last else most  # the last page holds its page_size matches
    async with store.db.execute(sql, args) as candidates:
        while len(found) < target:
            batch = [row[0] for row in await candidates.fetchmany(size)]
            if not batch:
                break
            async with store.db.execute(passing, (json.dumps(batch), *check_args)) as cursor:
                kept = {row[0] for row in await cursor.fetchall()}
            found += [image_id for image_id in batch if image_id in kept]
            size = min(2 * size, LAST_BATCH)
    ids, page, pages, total, exact = sliced(browse, found, len(found), most, last)
    return Page(tuple(await store.records(ids)), page, pages, total, exact)


async def _count_words(store: Store, browse: BrowseQuery, node, most: int | None) -> int:
    """The guild's matches of a words-only expression, counted by the words index (up to `most`)."""
    within = words.scope(browse.guild, browse.deleted)
    if most is not None:  # the scope's and the words' lists read side by side until `most` are found
        match = f"scope : {within} AND {words.fts_query(node, browse.negative, within)}"
        async with store.db.execute(COUNT_WORDS_UP_TO, (match, most)) as cursor:
            return (await cursor.fetchone())[0]
    async with store.db.execute("SELECT scope, images FROM scope_sizes") as cursor:
        sizes = {row[0]: row[1] for row in await cursor.fetchall()}
    total = 0
    for sign, match in words.count_queries(node, browse.negative, within, sizes):
        async with store.db.execute(COUNT_WORDS, (match,)) as cursor:
            total += sign * (await cursor.fetchone())[0]
    return total


@derived.recovering
@patterns.time_bounded
async def matching_ids(store: Store, browse: BrowseQuery) -> list[int]:
    """Every id matching the query's filters (all pages), in id order."""
    where, args, _, _ = await _filters(store, browse)
    async with store.db.execute(f"SELECT id FROM images WHERE {where} ORDER BY id", args) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def _filters(
    store: Store, browse: BrowseQuery, walk: bool = False
) -> tuple[str, tuple, object | None, tuple[str, list] | None]:
    """The WHERE clause and its arguments, (when the words index alone can count) the keyword tree, and with
    `walk`, an exact keyword's row check (its SQL and arguments) left out of the clause, which then keeps its
    candidates only (see `_walked`)."""
    clauses, args = filter_clauses(browse)
    if browse.filename:
        if browse.regex:
            patterns.compiled(browse.filename, browse.case_sensitive, "filename")
        clauses.append("salon_match(filename, ?, ?, ?, ?)")
        args += [browse.filename, browse.case_sensitive, browse.regex, patterns.deadline()]
    only_words = len(clauses) == 2 and not args[1:]
    count_match = check = None
    if has_keyword(browse):
        exact = browse.regex or browse.case_sensitive
        clause, more, node, check = await _keyword_clause(store, browse, walk and exact)
        if check is not None:  # (no trigram prefilter: every row of the guild is a candidate)
            if clause:
                clauses.append(clause)
                args += more
            return " AND ".join(clauses), tuple(args), None, check
        clauses.append(clause)
        args += more
        if only_words and isinstance(store.text, SqliteWords) and not exact and words.is_text(node):
            count_match = node
        if exact and clause.startswith("salon_"):  # a row-by-row scan (no prefilter): once, not per query
            async with store.db.execute(f"SELECT id FROM images WHERE {' AND '.join(clauses)}", args) as cur:
                ids = [row[0] for row in await cur.fetchall()]
            return "id IN (SELECT value FROM json_each(?))", (json.dumps(ids),), None, None
    return " AND ".join(clauses), tuple(args), count_match, None


async def _keyword_clause(
    store: Store, browse: BrowseQuery, walk: bool = False
) -> tuple[str, list, Node, tuple[str, list] | None]:
    """The keyword's SQL condition, its arguments, its parsed expression, and (`walk`, exact searches only) the
    row check apart: the condition is then the trigram prefilter's (empty without one)."""
    node = keyword_tree(browse)
    if browse.regex or browse.case_sensitive:
        # Exact: evaluated row by row on the same texts as `keywords.matches` (a scan of the guild's rows).
        text = " || char(10) || ".join(searched_columns(browse.negative))
        if browse.regex:  # one pattern over the searched text: the lightest check SQLite can call
            clause = f"salon_regexp(?, {text}, ?, ?)"
            args = [browse.keyword, browse.case_sensitive, patterns.deadline()]
        else:
            clause = (
                f"salon_keyword(?, {text}, negative_prompt, COALESCE(model, ''), COALESCE(sampler, ''), "
                "networks, COALESCE(CAST(seed AS TEXT), ''), ?, ?)"
            )
            args = [encode(node), browse.case_sensitive, False]
        needed = (
            regex_match(browse.keyword, browse.negative)
            if browse.regex
            else keyword_match(node, browse.negative)
        )
        if walk:
            kept = PREFILTERED if needed else ""
            return kept, [needed] if needed else [], node, (clause, args)
        if needed:
            # Only rows with the substrings the search needs are checked exactly, once, here; counting and
            # paging then use the ids (the check is Python, a few µs a row: not twice).
            state = "deleted_at IS NOT NULL" if browse.deleted else "deleted_at IS NULL"
            sql = (
                f"SELECT id FROM images WHERE id IN (SELECT rowid FROM images_text WHERE images_text MATCH ?) "
                f"AND +guild = ? AND +{state} AND {clause}"
            )
            async with store.db.execute(sql, (needed, browse.guild, *args)) as cursor:
                ids = [row[0] for row in await cursor.fetchall()]
            return "id IN (SELECT value FROM json_each(?))", [json.dumps(ids)], node, None
        return clause, args, node, None
    if isinstance(store.text, SqliteWords):
        return (*words.sql_condition(node, browse.negative), node, None)
    ids = await derived.whoosh_ids(store, node, browse.negative)
    return "id IN (SELECT value FROM json_each(?))", [json.dumps(ids)], node, None
