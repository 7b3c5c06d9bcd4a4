"""`/browse` and `salon browse` options → a validated `BrowseQuery` (one place for every front end)."""

from __future__ import annotations

from catalog.records import BrowseQuery, NegativeMode, RankFilter, SortOrder
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
) -> BrowseQuery:
    """The query for these options; page may be a number, "first" or "last"."""
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
    )
