"""The family strip of an image page: its original and everything made from it (catalog/lineage.py), each a
thumbnail linking to its page, labelled with its relation. Deleted and NSFW images are left out."""

from __future__ import annotations

import html

from catalog.records import ImageRecord


async def family_strip(catalog, guild: str, image: ImageRecord) -> str:
    """The strip's HTML, or "" when the image has no family. Links are relative to the image's page."""
    found = await catalog.family(guild, image.id)
    members = [m for m in found.members if not m.record.nsfw and not m.record.deleted]
    if len(members) <= 1 and all(m.record.id == image.id for m in members):
        return ""
    cards = []
    for member in members:
        record = member.record
        alt = html.escape(record.prompt[:120].replace("\n", " "))
        current = " aria-current=page" if record.id == image.id else ""
        cards.append(
            f'<a class=kin href="{record.id}"{current}><img src="../thumb/{record.id}.jpg" alt="{alt}" '
            f"loading=lazy><span class=relation>{html.escape(member.relation)}</span>"
            f"<span class=id>#{record.id}</span></a>"
        )
    more = (
        "" if found.complete else "<p class=count>(more not shown: the family is larger than Salon lists)</p>"
    )
    return f"<section class=family><h2>Family</h2><nav class=strip>{''.join(cards)}</nav>{more}</section>"
