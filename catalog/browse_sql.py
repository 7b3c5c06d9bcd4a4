"""What both catalogs' query planners (catalog/search.py for SQLite, catalog/pg_search.py for PostgreSQL) share:
the browse filters as SQL conditions, in either placeholder style; the sort columns and ORDER BY; the parsed
keyword; and the paging arithmetic (which page, where it starts, whether it is read from the other end, and
the slice of a list of matches a page is). Each planner only runs the statements.
"""

from __future__ import annotations

from typing import NamedTuple

from catalog.keywords import Node, Term, check_patterns, parse_keywords
from catalog.records import BrowseQuery, NegativeMode, SortOrder, capped_total
from core.errors import InvalidRequest

SORT_COLUMNS = {
    SortOrder.DATE: "created",
    SortOrder.RANK: "rank_mean",  # unrated (NULL) sorts lowest; a plain column, so its index gives the order
    SortOrder.SEED: "seed",
    SortOrder.STEPS: "steps",
    SortOrder.CFG: "cfg",
    SortOrder.MODEL: "model",
}


class Window(NamedTuple):
    """Where a page of a sorted count of matches is read: its number and the number of pages, the rows to skip
    and to read, in which direction, and whether the rows read are then turned round (`backwards`)."""

    number: int
    pages: int
    offset: int
    limit: int
    descending: bool
    backwards: bool


def filter_clauses(browse: BrowseQuery, mark: str = "?") -> tuple[list[str], list]:
    """The query's conditions on `images` but the filename and the keyword (the guild's and the state's
    first, in this order), and their arguments; `mark` is the driver's placeholder (`?` or `%s`). A page
    size out of range is refused."""
    if browse.page_size < 1 or browse.page_size > 100:
        raise InvalidRequest("page_size", f"{browse.page_size} is not from 1 to 100")
    clauses = [f"guild = {mark}", "deleted_at IS NOT NULL" if browse.deleted else "deleted_at IS NULL"]
    args: list = [browse.guild]
    if not browse.include_nsfw:
        clauses.append("nsfw = 0")
    if browse.negative is NegativeMode.NONE:
        clauses.append("negative_prompt = ''")
    if browse.author:
        clauses.append(f"author = {mark}")
        args.append(browse.author)
    if browse.model:
        clauses.append(f"model = {mark}")
        args.append(browse.model)
    if browse.favourites_of:
        clauses.append(f'id IN (SELECT image_id FROM favourites WHERE "user" = {mark})')
        args.append(browse.favourites_of)
    if browse.gallery is not None:
        clauses.append(f"id IN (SELECT image_id FROM gallery_images WHERE gallery_id = {mark})")
        args.append(browse.gallery)
    rank = browse.rank
    if rank.kind == "none":
        clauses.append("rank_count = 0")
    elif rank.kind == "exact":
        clauses.append(f"rank_mean >= {mark} AND rank_mean < {mark}")  # (unrated images have no mean)
        args += [rank.low - 0.5, rank.low + 0.5]
    elif rank.kind == "range":
        clauses.append(f"rank_mean BETWEEN {mark} AND {mark}")
        args += [rank.low, rank.high]
    return clauses, args


def has_keyword(browse: BrowseQuery) -> bool:
    """Whether the query searches a keyword (a regular expression as given; words when not blank)."""
    return bool(browse.keyword if browse.regex else browse.keyword.strip())


def keyword_tree(browse: BrowseQuery) -> Node:
    """The keyword parsed (a regular expression is one term, as in A1111, checked here)."""
    if browse.regex:
        node: Node = Term(browse.keyword)
        check_patterns(node, browse.case_sensitive)
        return node
    return parse_keywords(browse.keyword)


def order_by(sort: SortOrder, descending: bool, nulls: bool = False) -> str:
    """The ORDER BY of a sort (ties by id); `nulls` spells out SQLite's place of NULLs (lowest) for
    PostgreSQL."""
    direction = "DESC" if descending else "ASC"
    where_nulls = (" NULLS LAST" if descending else " NULLS FIRST") if nulls else ""
    return f"{SORT_COLUMNS[sort]} {direction}{where_nulls}, id {direction}"


def numbered(browse: BrowseQuery, total: int, exact: bool = True) -> tuple[int, int]:
    """(the page's number, the number of pages) for `total` matches (more when not `exact`: the last page is
    then -1, unnumbered); a page past the end is refused."""
    pages = max(1, -(-total // browse.page_size))
    if browse.page == -1 and not exact:
        return -1, pages
    number = pages if browse.page == -1 else browse.page
    if not 1 <= number <= pages:
        raise InvalidRequest("page", f"page {browse.page} does not exist; there are {pages} page(s)")
    return number, pages


def window(browse: BrowseQuery, total: int, exact: bool) -> Window:
    """Where the page is read, for `total` matches (a capped count when not `exact`): the last page past the
    cap is the last page_size matches, read from the end; a deep page is read from the nearer end, then
    turned round (not in random order)."""
    number, pages = numbered(browse, total, exact)
    offset, limit = (number - 1) * browse.page_size, browse.page_size
    descending = browse.descending
    backwards = exact and browse.sort is not SortOrder.RANDOM and offset > total // 2
    if number == -1:
        offset, descending, backwards = 0, not descending, True
    elif backwards:
        limit = min(limit, total - offset)
        offset, descending = total - offset - limit, not descending
    return Window(number, pages, offset, limit, descending, backwards)


def sliced(browse: BrowseQuery, found: list[int], counted: int, most: int, backwards: bool):
    """(the page's ids, its number, the number of pages, the total, whether exact) from `found` (the matches in
    the page's order, or from the end when `backwards`), `counted` matches having been counted up to `most`."""
    total, exact = capped_total(min(counted, most), most)
    if backwards:  # every match (then numbered from the start), or the last page's (read backwards)
        found = found[::-1] if exact else found[: browse.page_size][::-1]
    number, pages = numbered(browse, total, exact)
    offset = max(0, (number - 1) * browse.page_size)
    return found[offset : offset + browse.page_size], number, pages, total, exact
