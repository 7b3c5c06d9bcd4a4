"""Catalog values: an image record as stored, what is needed to add one, and the browse query with its page."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from engine.infotext import Infotext, parse_infotext

COUNT_CAP = 1_000  # matches counted exactly; beyond, a page says "1,000+" (BrowseQuery.count_cap)


class Relation(StrEnum):
    """How an image came from its parent image."""

    REROLL = "reroll"
    VARIATION = "variation"
    UPSCALE = "upscale"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    ANIMATION_FRAME = "animation frame"
    EDIT = "edit"  # the same settings with some changed by hand
    RERUN = "rerun"  # run again from its generation info


class NegativeMode(StrEnum):
    """Where an infotext keyword is looked for, with respect to the negative prompt (SPEC §4)."""

    NO = "no"  # prompt and parameters, not the negative prompt (the default)
    NONE = "none"  # like NO, and only images generated without a negative prompt
    YES = "yes"  # also in the negative prompt
    ONLY = "only"  # only in the negative prompt


def searched_columns(negative: NegativeMode) -> tuple[str, ...]:
    """The image columns a keyword without a field is looked for in, in this order (joined by newlines)."""
    if negative is NegativeMode.ONLY:
        return ("negative_prompt",)
    if negative is NegativeMode.YES:
        return ("prompt", "negative_prompt", "params")
    return ("prompt", "params")


def fts_columns(negative: NegativeMode) -> str:
    """The same columns as an FTS5 column filter."""
    return "{" + " ".join(searched_columns(negative)) + "}"


class SortOrder(StrEnum):
    DATE = "date"
    RANK = "rank"
    SEED = "seed"
    STEPS = "steps"
    CFG = "cfg"
    MODEL = "model"
    RANDOM = "random"


@dataclass(frozen=True)
class NewImage:
    """An image file to add: where it is, who made it where, and its generation info (A1111 infotext)."""

    path: str
    guild: str
    author: str
    infotext: str = ""
    channel: str | None = None
    message: str | None = None
    created: float | None = None  # default: the file's modification time
    parent_id: int | None = None
    relation: Relation | None = None
    nsfw: bool = False
    job_id: int | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One row of the images table (SPEC §4)."""

    id: int
    guild: str
    channel: str | None
    message: str | None
    author: str
    created: float
    path: str
    filename: str
    sha256: str
    width: int
    height: int
    model: str | None
    model_hash: str | None
    sampler: str | None
    schedule: str | None
    steps: int | None
    cfg: float | None
    seed: int | None
    prompt: str
    negative_prompt: str
    params: str  # the infotext's parameter line ("Steps: 20, Sampler: …")
    infotext: str
    networks: tuple[str, ...]  # "lora:name", "embedding:name", "hypernet:name"
    parent_id: int | None
    relation: Relation | None
    nsfw: bool
    deleted_at: float | None
    rank_mean: float | None
    rank_count: int
    job_id: int | None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class RankFilter:
    """All, None (unrated), exactly N (the rounded mean), or a min–max range of the mean."""

    kind: str = "all"  # "all", "none", "exact", "range"
    low: float = 1.0
    high: float = 5.0

    @classmethod
    def parse(cls, text: str) -> RankFilter:
        """ "all", "none", "4", "3-5" (as typed in `/browse` and `salon browse --rank`)."""
        from core.errors import InvalidRequest

        value = text.strip().lower()
        if value in ("", "all"):
            return cls()
        if value == "none":
            return cls("none")
        match = re.fullmatch(r"([1-5](?:\.\d+)?)\s*(?:[-–]\s*([1-5](?:\.\d+)?))?", value)
        if not match:
            raise InvalidRequest("rank", f"{text!r} is not all, none, a score 1–5 or a range like 3-5")
        low = float(match.group(1))
        if match.group(2) is None:
            if not low.is_integer():
                raise InvalidRequest("rank", f"{text!r}: an exact rank is a whole number 1–5")
            return cls("exact", low, low)
        high = float(match.group(2))
        if high < low:
            raise InvalidRequest("rank", f"{text!r}: the minimum is above the maximum")
        return cls("range", low, high)


@dataclass(frozen=True)
class BrowseQuery:
    """Every filter of the Image Browser (SPEC §4). Text filters are empty when unused."""

    guild: str
    filename: str = ""
    keyword: str = (
        ""  # an expression: words, "phrases", and/or/not, (groups), model: lora: sampler: seed: neg:
    )
    negative: NegativeMode = NegativeMode.NO
    case_sensitive: bool = False
    regex: bool = False
    rank: RankFilter = field(default_factory=RankFilter)
    author: str | None = None
    model: str | None = None
    favourites_of: str | None = None
    gallery: int | None = None  # a collection's id (catalog/galleries.py): only its images
    sort: SortOrder = SortOrder.DATE
    descending: bool = True
    page: int = 1  # 1-based; -1 = last
    page_size: int = 25
    deleted: bool = False  # True: browse the recycle bin instead
    include_nsfw: bool = True
    random_seed: int = 0  # for SortOrder.RANDOM: the same seed gives the same order across pages
    # Matches are counted exactly up to this many (or up to the page asked for, if further); beyond, the
    # page says "more than `total`" (Page.exact False), and the last page (-1) is the last `page_size`
    # matches, read from the end, its number unknown (Page.page -1). None: count every match.
    count_cap: int | None = COUNT_CAP

    def count_limit(self) -> int | None:
        """How many matches to count at most (one more than the cap: "is there more"); None = all (also for the
        last page in random order, which draws every match anyway)."""
        if self.count_cap is None or (self.page == -1 and self.sort is SortOrder.RANDOM):
            return None
        return max(self.count_cap, self.page * self.page_size) + 1


@dataclass(frozen=True)
class Page:
    """One page of results. `total` is the number of matches when `exact`; otherwise there are more than
    `total` (the count stopped at the query's cap) and at least `pages` pages, some after this one, except
    when `page` is -1: the last page asked for past the cap, the last `page_size` matches (its number is not
    known: front ends say "last page", commands/browse.py `position_text`)."""

    images: tuple[ImageRecord, ...]
    page: int
    pages: int
    total: int
    exact: bool = True


def capped_total(counted: int, limit: int | None) -> tuple[int, bool]:
    """(total, exact) of a count that stopped at `limit` (BrowseQuery.count_limit): reaching it means more
    than `limit - 1` matches."""
    if limit is None or counted < limit:
        return counted, True
    return limit - 1, False


# No `<` inside a tag: each match attempt stops at the next `<`, so the scan is linear. (With `[^>]*`, text
# of many `<lora:` and no `>` made every attempt run to the end: 1 MB of them took about 35 minutes.)
NETWORK_TAG = re.compile(r"<(lora|lyco|hypernet):([^:<>]+)(?::[^<>]*)?>", re.IGNORECASE)


def generation_fields(infotext: str) -> dict[str, object]:
    """The searchable columns of an infotext (empty values when there is none)."""
    info: Infotext = parse_infotext(infotext) if infotext.strip() else Infotext("", "", {})
    networks: list[str] = []
    for kind, name in NETWORK_TAG.findall(info.prompt):
        networks.append(f"{'lora' if kind.lower() == 'lyco' else kind.lower()}:{name.strip()}")
    for key, prefix in (("Lora hashes", "lora"), ("TI hashes", "embedding")):
        for item in filter(None, (part.strip() for part in info.params.get(key, "").split(","))):
            networks.append(f"{prefix}:{item.split(':')[0].strip()}")
    params = ", ".join(f"{k}: {v}" for k, v in info.params.items())
    return {
        "prompt": info.prompt,
        "negative_prompt": info.negative_prompt,
        "params": params,
        "model": info.model,
        "model_hash": info.model_hash,
        "sampler": info.sampler,
        "schedule": info.schedule_type if info.params else None,
        "steps": info.steps,
        "cfg": info.cfg_scale,
        "seed": info.seed,
        "networks": tuple(dict.fromkeys(networks)),
    }
