"""An image's family: its original (the parents walked up to the root) and everything made from it (rerolls,
variations, upscales, img2img and inpaint results, edits, reruns, animation frames), each with its relation.

One algorithm for both catalogs: it asks only for (id, parent id) links within one guild, so the SQLite
catalog (catalog/catalog.py) and the PostgreSQL one (catalog/pg_catalog.py) give it their own queries. The walk
is bounded (`MAX_DEPTH` generations each way, `MAX_MEMBERS` images) and never visits an image twice, so a
cycle of parents (which the schema does not forbid) cannot make it loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from catalog.records import ImageRecord

MAX_DEPTH = 32  # generations walked up to the original, and down from it
MAX_MEMBERS = 200  # images in one family (the original first, then generation by generation)
ORIGINAL = "original"

# (ids) → [(id, parent id)]: the rows with these ids, or the rows whose parent is one of these ids (one guild)
Links = Callable[[Sequence[int]], Awaitable[list[tuple[int, int | None]]]]
Records = Callable[[Sequence[int]], Awaitable[list[ImageRecord]]]


@dataclass(frozen=True)
class Member:
    """One image of a family: how it was made from its parent ("original" for the root), and its generation
    (0 for the original)."""

    record: ImageRecord
    relation: str
    generation: int


@dataclass(frozen=True)
class Family:
    """The family of `asked`: `members` in generation order (the original first when it is not deleted);
    `complete` is False when a bound cut the walk short."""

    asked: int
    root: int
    members: tuple[Member, ...]
    complete: bool

    def __len__(self) -> int:
        return len(self.members)


async def family(
    image_id: int, rows_of: Links, children_of: Links, records: Records, include_deleted: bool = False
) -> Family:
    """The family of one image (it must exist). Deleted images are walked through but listed only with
    `include_deleted` (the asked image is always listed)."""
    root, complete = await _original(image_id, rows_of)
    generation_of: dict[int, int] = {root: 0}
    frontier = [root]
    generation = 0
    while frontier and generation < MAX_DEPTH:
        generation += 1
        fresh = sorted({child for child, _ in await children_of(frontier) if child not in generation_of})
        room = MAX_MEMBERS - len(generation_of)
        if len(fresh) > room:
            fresh, complete = fresh[:room], False
        for child in fresh:
            generation_of[child] = generation
        frontier = fresh
    if frontier and generation >= MAX_DEPTH and await children_of(frontier):
        complete = False
    found = await records(list(generation_of))
    members = [
        Member(record, _relation(record, root), generation_of[record.id])
        for record in found
        if include_deleted or not record.deleted or record.id == image_id
    ]
    members.sort(key=lambda member: (member.generation, member.record.id))
    return Family(image_id, root, tuple(members), complete)


async def _original(image_id: int, rows_of: Links) -> tuple[int, bool]:
    """The root of the image's parents (within the guild), and False if the walk stopped at its bound."""
    seen = {image_id}
    current = image_id
    for _ in range(MAX_DEPTH):
        rows = dict(await rows_of([current]))
        parent = rows.get(current)
        if parent is None or parent in seen or not await rows_of([parent]):
            return current, True  # no parent, a cycle, or a parent purged or in another guild
        seen.add(parent)
        current = parent
    return current, False


def _relation(record: ImageRecord, root: int) -> str:
    if record.id == root:
        return ORIGINAL
    return record.relation.value if record.relation is not None else "made from"
