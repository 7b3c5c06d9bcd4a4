"""Counting a page's matches only up to a cap (records.BrowseQuery.count_cap): the pages are the same as with
an exact count, the total is exact up to the cap and "more than" beyond, the last page past the cap is the last
`page_size` matches (unnumbered: "last page"); exact searches stop checking once the cap is reached; and the
default browse query of a guild is read through its sort index (no sort of every match)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from catalog import search
from catalog.catalog import Catalog
from catalog.records import COUNT_CAP, BrowseQuery, Page, RankFilter, SortOrder
from commands.browse import browse_query, count_text, has_next, has_previous, pages_text, position_text

ROWS = 40  # in guild g1; 27 of them say "red", 13 "blue"; guild g2 has 10 more with "red"


def rows() -> list[dict]:
    made = []
    for i in range(ROWS + 10):
        guild = "g1" if i < ROWS else "g2"
        colour = "blue" if i % 3 == 2 and guild == "g1" else "red"
        made.append({
            "guild": guild, "channel": None, "message": None, "author": f"u{i % 4}", "created": 1000.0 + i // 2,
            "path": f"files/{i}.png", "filename": f"{i:05d}.png", "sha256": f"{i:064x}", "width": 8, "height": 8,
            "model": f"m{i % 3}", "model_hash": None, "sampler": "Euler", "schedule": None, "steps": 20 + i % 5,
            "cfg": 7.0, "seed": i * 7 % 11, "prompt": f"a {colour} cat number {i}", "negative_prompt": "",
            "params": "Steps: 20", "infotext": "", "networks": json.dumps([]), "parent_id": None,
            "relation": None, "nsfw": 0, "job_id": None,
        })  # fmt: skip
    return made


@pytest.fixture(params=["sqlite", "whoosh"])
async def catalog(tmp_path, request):
    opened = await Catalog.open(tmp_path / "catalog", text_index=request.param)
    await opened.bulk_insert(rows())
    await opened.rebuild_index()
    yield opened
    await opened.close()


def ids(page: Page) -> list[int]:
    return [image.id for image in page.images]


async def test_a_count_stops_at_its_cap_and_says_so(catalog):
    first = await catalog.search(BrowseQuery("g1", page_size=4, count_cap=10))
    assert (first.page, first.pages, first.total, first.exact) == (1, 3, 10, False)
    assert count_text(first) == "10+" and pages_text(first) == "3+" and has_next(first)
    exact = await catalog.search(BrowseQuery("g1", page_size=4, count_cap=None))
    assert (exact.total, exact.pages, exact.exact) == (ROWS, 10, True) and ids(exact) == ids(first)
    # A page past the cap counts up to itself (and one more): still "more than", its next page known to exist.
    third = await catalog.search(BrowseQuery("g1", page=3, page_size=4, count_cap=10))
    assert (third.pages, third.total, third.exact) == (3, 12, False) and has_next(third)
    # Near the end the count reaches every match: exact again, and the end is the end.
    red = BrowseQuery("g1", keyword="red", page=6, page_size=5, count_cap=10)
    sixth = await catalog.search(red)
    assert (sixth.pages, sixth.total, sixth.exact) == (6, 27, True) and not has_next(sixth)
    assert len(sixth.images) == 2 and count_text(sixth) == "27" and pages_text(sixth) == "6"
    # The last page (-1) past the cap: the last 4 matches, read from the end; its number is not counted.
    last = await catalog.search(BrowseQuery("g1", page=-1, page_size=3, count_cap=10))
    assert (last.page, last.pages, last.total, last.exact) == (-1, 4, 10, False) and ids(last) == [3, 2, 1]
    assert position_text(last) == "last page" and not has_next(last) and not has_previous(last)
    # Within the cap it is numbered as before (aligned on the page size).
    few = await catalog.search(BrowseQuery("g1", keyword="blue", page=-1, page_size=4, count_cap=20))
    assert (few.page, few.pages, few.total, few.exact) == (4, 4, 13, True) and len(few.images) == 1
    assert position_text(few) == "page 4 of 4" and has_previous(few)


async def test_a_capped_count_gives_the_same_pages(catalog):
    """Every page of several queries, with a small cap, is the page the exact count gives."""
    queries = [
        BrowseQuery("g1", page_size=3),
        BrowseQuery("g1", keyword="red", page_size=4, sort=SortOrder.SEED, descending=False),
        BrowseQuery("g1", keyword="cat and not blue", page_size=5, sort=SortOrder.STEPS),
        BrowseQuery("g1", keyword="r.d", regex=True, page_size=6, sort=SortOrder.RANDOM, random_seed=3),
        BrowseQuery("g1", keyword="Red", case_sensitive=True, page_size=2),
        BrowseQuery("g1", model="m1", page_size=2, sort=SortOrder.MODEL),
    ]
    for exact_query in queries:
        exact_query = replace(exact_query, count_cap=None)
        pages = (await catalog.search(exact_query)).pages
        every = [
            i for n in range(1, pages + 1) for i in ids(await catalog.search(replace(exact_query, page=n)))
        ]
        for number in [*range(1, pages + 1), -1]:
            expected = await catalog.search(replace(exact_query, page=number))
            for cap in (1, 5, 7):
                got = await catalog.search(replace(exact_query, page=number, count_cap=cap))
                if got.page == -1:  # the last page past the cap: the last page_size matches, in order
                    assert number == -1 and not got.exact and got.total == cap, (exact_query, cap)
                    assert ids(got) == every[-exact_query.page_size :], (exact_query, cap)
                    continue
                assert ids(got) == ids(expected) and got.page == expected.page, (exact_query, number, cap)
                if got.exact:
                    assert (got.total, got.pages) == (expected.total, expected.pages)
                else:  # "more than total": true, and the page's rows are all counted
                    assert expected.total > got.total >= got.page * exact_query.page_size


async def test_an_exact_search_stops_checking_at_the_cap(catalog, monkeypatch):
    """A regex or case-sensitive search checks its candidates in the page's order and stops once it holds the
    capped count's matches: far fewer checks than candidates, the same page as checking them all."""
    monkeypatch.setattr(search, "FIRST_BATCH", 2)  # (batches of 2, 4, 8…: the test's 40 rows are a few)
    checked: list[int] = []
    seen = catalog.store.db

    def counting(pattern, text, case_sensitive, ends):
        checked.append(1)
        return int(re.search(pattern, text or "") is not None)

    await seen.create_function("salon_regexp", 4, counting)
    query = BrowseQuery("g1", keyword="c.t number", regex=True, page_size=2, count_cap=3)
    first = await catalog.search(query)
    assert (first.total, first.exact, ids(first)) == (3, False, [40, 39]) and len(checked) < ROWS // 2
    checked.clear()
    every = await catalog.search(replace(query, count_cap=None))
    assert every.total == ROWS and ids(every) == ids(first) and len(checked) == ROWS
    checked.clear()
    last = await catalog.search(replace(query, page=-1))
    assert (last.page, ids(last)) == (-1, [2, 1]) and len(checked) < ROWS // 2


def test_counts_are_written_with_their_cap():
    many = Page((), 1, 400, 10_000, exact=False)
    assert count_text(many) == "10,000+" and pages_text(many) == "400+" and has_next(many)
    few = Page((), 2, 2, 37)
    assert count_text(few) == "37" and pages_text(few) == "2" and not has_next(few)
    assert count_text(Page((), 1, 1, 0)) == "0" and pages_text(Page((), 1, 0, 0)) == "1"
    assert position_text(many) == "page 1 of 400+" and position_text(few) == "page 2 of 2"
    tail = Page((), -1, 40, 1_000, exact=False)
    assert position_text(tail) == "last page" and count_text(tail) == "1,000+" and not has_next(tail)
    assert browse_query("g").count_cap == COUNT_CAP and browse_query("g", exact_count=True).count_cap is None


async def test_the_default_browse_of_a_guild_walks_its_sort_index(tmp_path):
    """The page query of a guild's default browse (newest first), by rank, or of a rank range with more matches
    than the count's cap reads the sort index in order and stops at the page: no temporary B-tree sorting every
    match, for the page nor for the count."""
    catalog = await Catalog.open(tmp_path / "catalog", text_index="sqlite")
    try:
        await catalog.bulk_insert(rows())
        for image_id in range(1, 9):
            await catalog.rate("g1", image_id, "ann", 4)
        seen: list[str] = []
        db = catalog.store.db
        await db.set_trace_callback(seen.append)
        await catalog.search(BrowseQuery("g1"))
        await catalog.search(BrowseQuery("g1", sort=SortOrder.RANK))
        # More rated images than the count's cap: the date index is walked, not the rank range sorted.
        rated = await catalog.search(
            BrowseQuery("g1", rank=RankFilter.parse("3-5"), page_size=2, count_cap=3)
        )
        assert not rated.exact and [image.id for image in rated.images] == [8, 7]
        await db.set_trace_callback(None)
        selects = [sql for sql in seen if sql.lstrip().upper().startswith("SELECT") and "FROM images" in sql]
        assert selects
        for sql in selects:
            if "json_each" in sql:  # reading the page's rows by id
                continue
            async with db.execute(f"EXPLAIN QUERY PLAN {sql}") as cursor:
                plan = " / ".join(row[3] for row in await cursor.fetchall())
            assert "TEMP B-TREE" not in plan and "SCAN images" not in plan, (sql, plan)
            walked = re.search(r"SEARCH images USING (COVERING )?INDEX images_by_(date|rank) ", plan)
            assert walked, (sql, plan)
            for column, index in (("created", "images_by_date"), ("rank_mean", "images_by_rank")):
                if f"ORDER BY {column}" in sql:
                    assert index in plan, (sql, plan)
    finally:
        await catalog.close()


def test_the_web_pager_of_an_unnumbered_last_page():
    """The last page past the cap links to the first page only: no previous (its number is unknown), no next."""
    from web.server import _pager

    tail = _pager(Page((), -1, 40, 1_000, exact=False), {})
    assert (
        "rel=first" in tail and "rel=prev" not in tail and "rel=next" not in tail and "rel=last" not in tail
    )
    middle = _pager(Page((), 2, 40, 1_000, exact=False), {})
    assert all(f"rel={rel}" in middle for rel in ("first", "prev", "next", "last"))
