"""`/browse` and `salon browse` options → a validated `BrowseQuery` (one place for every front end), and how
every front end writes a page's count of matches (exact up to the count's cap, "1,000+" beyond)."""

from __future__ import annotations

from catalog.records import COUNT_CAP, BrowseQuery, NegativeMode, Page, RankFilter, SortOrder
from core.errors import InvalidRequest

NEGATIVE_HELP = (
    "negative prompt: no = search the prompt and parameters (default); none = only images made without a "
    "negative prompt; yes = search the negative prompt too; only = search only the negative prompt"
)


def _choice(option: str, value: str, allowed: type) -> object:
    try:
        return allowed(value.strip().lower())
    except ValueError:
        names = ", ".join(member.value for member in allowed)
        raise InvalidRequest(option, f"{value!r} is not one of: {names}") from None


def browse_query(
    guild: str,
    *,
    keyword: str = "",
    filename: str = "",
    negative: str = "no",
    case_sensitive: bool = False,
    regex: bool = False,
    rank: str = "all",
    author: str | None = None,
    model: str | None = None,
    favourites_of: str | None = None,
    gallery: int | None = None,
    sort: str = "date",
    ascending: bool = False,
    page: str | int = 1,
    page_size: int = 25,
    deleted: bool = False,
    include_nsfw: bool = True,
    random_seed: int = 0,
    exact_count: bool = False,
) -> BrowseQuery:
    """The query for these options; page may be a number, "first" or "last". `exact_count`: count every
    match (to say how many a bulk action takes), not only up to the cap a page needs."""
    if isinstance(page, str):
        word = page.strip().lower()
        if word in ("first", "last"):
            page = 1 if word == "first" else -1
        elif word.isdigit() and int(word) >= 1:
            page = int(word)
        else:
            raise InvalidRequest("page", f"{page!r} is not a page number, first or last")
    elif page < 1 and page != -1:
        raise InvalidRequest("page", f"{page} is not a page number (1 or more)")
    if not 1 <= page_size <= 100:
        raise InvalidRequest("page_size", f"{page_size} is not from 1 to 100")
    return BrowseQuery(
        guild=guild,
        keyword=keyword,
        filename=filename,
        negative=_choice("negative", negative, NegativeMode),
        case_sensitive=case_sensitive,
        regex=regex,
        rank=RankFilter.parse(rank),
        author=author,
        model=model,
        favourites_of=favourites_of,
        gallery=gallery,
        sort=_choice("sort", sort, SortOrder),
        descending=not ascending,
        page=page,
        page_size=page_size,
        deleted=deleted,
        include_nsfw=include_nsfw,
        random_seed=random_seed,
        count_cap=None if exact_count else COUNT_CAP,
    )


def count_text(page: Page) -> str:
    """The number of matches as shown: "234", or "1,000+" when counting stopped at the cap."""
    return f"{page.total:,}" + ("" if page.exact else "+")


def pages_text(page: Page) -> str:
    """The number of pages as shown: "9", or "40+" when there are more matches than were counted."""
    return f"{max(1, page.pages):,}" + ("" if page.exact else "+")


def position_text(page: Page) -> str:
    """Where the page is: "page 3 of 40+", or "last page" for the last page of more matches than were
    counted (the last `page_size` matches, whose page number is not known)."""
    return "last page" if page.page == -1 else f"page {page.page} of {pages_text(page)}"


def has_next(page: Page) -> bool:
    """Whether a page comes after this one (also when the count stopped before the end)."""
    return page.page != -1 and (page.page < page.pages or not page.exact)


def has_previous(page: Page) -> bool:
    """Whether the page before this one can be asked for by its number (not from an unnumbered last page)."""
    return page.page > 1
