"""Curating the catalog from the command line: `salon rate`, `favourite`, `delete` (by id or by a filter),
`restore`, `purge`, and `salon browse --family` (an image's original and everything made from it).

The user is this machine's command-line owner (`jobs.queue.owner_for_cli`, as for the jobs it submits), and
the images are those of `--guild` (default `local`, the imports of `salon import`). Only `Catalog`'s public
methods are used, so the same commands work on the PostgreSQL catalog. Every id is checked before anything
changes: an unknown one is named, and nothing is done.
"""

from __future__ import annotations

import argparse
import sys

from cli.output import console
from config import Settings
from core.errors import InvalidRequest


def _known(catalog, guild: str, ids: list[int], deleted: bool | None = None):
    """Await the records of `ids`, refusing (before any change) the ids that are not in the guild, or, with
    `deleted` given, not in that state."""

    async def check():
        records = [await catalog.get(guild, image_id) for image_id in ids]
        unknown = [str(i) for i, record in zip(ids, records, strict=True) if record is None]
        if unknown:
            raise InvalidRequest(
                "id", f"no image {', '.join(unknown)} in guild {guild!r} (`salon browse` lists them)"
            )
        if deleted is not None:
            wrong = [str(r.id) for r in records if r.deleted != deleted]
            if wrong:
                state = "not in the recycle bin" if deleted else "already in the recycle bin"
                raise InvalidRequest("id", f"image {', '.join(wrong)} is {state}")
        return records

    return check()


def confirm(question: str, yes: bool) -> bool:
    """True with --yes; else ask on the terminal, and refuse when stdin is not one (a script must say --yes)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InvalidRequest(
            "--yes", f"stdin is not a terminal, so nobody can answer: {question} Add --yes to go ahead"
        )
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _score(text: str) -> int | None:
    value = text.strip().lower()
    if value in ("none", "0", "-"):
        return None
    if value.isdigit() and 1 <= int(value) <= 5:
        return int(value)
    raise InvalidRequest("score", f"{text!r} is not a score from 1 to 5, nor none (to remove your rating)")


def rate(args: argparse.Namespace, settings: Settings) -> int:
    from app.oneshot import with_catalog
    from jobs.queue import owner_for_cli

    score, user = _score(args.score), owner_for_cli()

    async def work(catalog):
        await _known(catalog, args.guild, [args.id])
        return await catalog.rate(args.guild, args.id, user, score)

    record = with_catalog(settings, work)
    mean = f"{record.rank_mean:.2f} from {record.rank_count} rating(s)" if record.rank_count else "unrated"
    said = f"rated {score}" if score is not None else "your rating removed"
    console.print(f"#{record.id}: {said} (as {user}); now {mean}")
    return 0


def favourite(args: argparse.Namespace, settings: Settings) -> int:
    from app.oneshot import with_catalog
    from jobs.queue import owner_for_cli

    user = owner_for_cli()

    async def work(catalog):
        await _known(catalog, args.guild, [args.id])
        await catalog.favourite(args.guild, args.id, user, on=not args.off)

    with_catalog(settings, work)
    console.print(f"#{args.id} {'removed from' if args.off else 'added to'} the favourites of {user}")
    return 0


def delete(args: argparse.Namespace, settings: Settings) -> int:
    from app.oneshot import with_catalog
    from commands.browse import browse_query

    if bool(args.ids) == (args.filter is not None):
        raise InvalidRequest("delete", "give image ids, or --filter with a browse query (not both)")
    if args.ids:

        async def by_id(catalog):
            await _known(catalog, args.guild, args.ids, deleted=False)
            return await catalog.delete(args.guild, args.ids)

        moved = with_catalog(settings, by_id)
    else:
        query = browse_query(args.guild, keyword=args.filter, page_size=1, exact_count=True)
        total = with_catalog(settings, lambda catalog: catalog.search(query)).total
        if total == 0:
            console.print(f"no image matches {args.filter!r}; nothing deleted")
            return 0
        if not confirm(f"Move all {total} image(s) matching {args.filter!r} to the recycle bin?", args.yes):
            console.print("nothing deleted")
            return 1
        moved = with_catalog(settings, lambda catalog: catalog.delete_matching(query))
    console.print(f"{moved} image(s) moved to the recycle bin (`salon restore ID` brings one back)")
    return 0


def restore(args: argparse.Namespace, settings: Settings) -> int:
    from app.oneshot import with_catalog

    async def work(catalog):
        await _known(catalog, args.guild, args.ids, deleted=True)
        return await catalog.restore(args.guild, args.ids)

    console.print(f"{with_catalog(settings, work)} image(s) restored from the recycle bin")
    return 0


def purge(args: argparse.Namespace, settings: Settings) -> int:
    from app.oneshot import with_catalog
    from commands.browse import browse_query

    query = browse_query(args.guild, deleted=True, page_size=1, exact_count=True)
    total = with_catalog(settings, lambda catalog: catalog.search(query)).total
    if total == 0:
        console.print("the recycle bin is empty")
        return 0
    if not confirm(f"Remove the {total} image(s) of the recycle bin for good (files too)?", args.yes):
        console.print("nothing purged")
        return 1
    removed = with_catalog(settings, lambda catalog: catalog.purge(args.guild))
    console.print(f"{removed} image(s) removed for good")
    return 0


def family(args: argparse.Namespace, settings: Settings) -> int:
    """`salon browse --family ID`: the original first, then each generation, with its relation."""
    from rich.table import Table

    from app.oneshot import with_catalog

    found = with_catalog(settings, lambda catalog: catalog.family(args.guild, args.family))
    table = Table("id", "relation", "parent", "file", "seed", "prompt")
    for member in found.members:
        image = member.record
        relation = ("  " * member.generation) + member.relation
        if image.id == found.asked:
            relation += " ◀"
        parent = str(image.parent_id) if image.parent_id and member.generation else ""
        row = (str(image.id), relation, parent, image.filename, str(image.seed or ""))
        table.add_row(*row, image.prompt[:60])
    console.print(table)
    more = "" if found.complete else " (more not shown: the family is larger than Salon lists)"
    console.print(f"the family of #{found.asked}: {len(found)} image(s), original #{found.root}{more}")
    return 0
