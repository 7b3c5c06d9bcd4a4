"""🌳 in the Image Browser: an image's family (its original and every reroll, variation, upscale, img2img,
inpaint, edit, rerun and animation frame made from it, catalog/lineage.py), shown to the asker only as a
numbered contact sheet with each image's relation."""

from __future__ import annotations

import asyncio

import discord

from bot import render
from bot.client import Salon
from bot.interact import Place
from catalog.records import ImageRecord

SHOWN = 25  # members drawn on the sheet and listed (the rest are counted)


async def show_family(bot: Salon, interaction: discord.Interaction, place: Place, image: ImageRecord) -> None:
    found = await bot.services.catalog.family(place.guild, image.id)
    members = [
        m for m in found.members if place.age_restricted or not m.record.nsfw or m.record.id == image.id
    ]
    shown = members[:SHOWN]
    local = await bot.services.queue.results.local_images([m.record for m in shown])  # from other hosts too
    sheet = await asyncio.to_thread(render.contact_sheet, [record.path for record in local])
    lines = []
    for number, member in enumerate(shown, start=1):
        record = member.record
        prompt = render.clip(record.prompt.replace("\n", " "), 60) or "(no prompt)"
        asked = " ◀" if record.id == image.id else ""
        indent = "\u2003" * min(member.generation, 6)  # an em space per generation
        lines.append(
            f"{indent}`{number}` **#{record.id}** {member.relation}{asked} · {discord.utils.escape_markdown(prompt)}"
        )
    hidden = len(members) - len(shown)
    more = [f"…and {hidden} more"] if hidden > 0 else []
    if not found.complete:
        more.append("(the family is larger than Salon lists)")
    embed = discord.Embed(
        title=f"Family of #{image.id}", description="\n".join(lines + more)[:4096], colour=0x57F287
    )
    embed.set_image(url="attachment://family.png")
    embed.set_footer(text=f"{len(members)} images · original #{found.root}")
    upload = render.Upload("family.png", render.png_bytes(sheet))
    await interaction.response.send_message(embed=embed, file=upload.file(), ephemeral=True)
