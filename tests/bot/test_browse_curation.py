"""The Image Browser's curation through Discord: ♻️ restore in the recycle bin (moderators), 🌳 an image's
family, and 🔢 jump to a page in a modal (a number or "last", refused with a clear message otherwise)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from catalog.records import NewImage, Relation
from tests.bot.conftest import ANN, CHANNEL, GUILD, MOD
from tests.bot.test_browse import _browse, _shown, seeded  # noqa: F401  (seeded: a fixture)


async def _pick(salon, user, message, image_id):
    done = await salon.fake.select(user, message.id, message.selects()[0]["custom_id"], [str(image_id)])
    await done.wait_acked()


async def test_a_moderator_restores_from_the_recycle_bin(salon, seeded):  # noqa: F811
    catalog = salon.services.catalog
    await catalog.delete(str(GUILD), [seeded[0], seeded[1]])
    opened = await _browse(salon, user=MOD, recycle_bin=True)
    message = opened.original
    assert sorted(_shown(message)[0]) == sorted(seeded[:2])
    labels = {label for _, label, _ in message.buttons()}
    assert "Restore" in labels and not labels & {"Delete", "Rerun", "Delete all results"}
    await _pick(salon, MOD, message, seeded[1])
    click = await salon.fake.click(MOD, message.id, message.find_button("Restore"))
    await click.wait_acked()
    await salon.fake.wait_for(lambda: _shown(message)[0] == [seeded[0]], 10, "the restored image gone")
    restored = await catalog.get(str(GUILD), seeded[1])
    assert not restored.deleted and (await catalog.get(str(GUILD), seeded[0])).deleted
    assert Path(restored.path).is_file()  # the file is back where it was
    assert _shown((await _browse(salon, user=ANN)).original)[1] == 11  # 12 seeded, one still deleted


async def test_family_button_lists_the_original_and_each_relation(salon, seeded, tmp_path):  # noqa: F811
    catalog = salon.services.catalog
    root = seeded[11]

    def child(name: str, parent: int, relation: Relation) -> NewImage:
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (32, 32), (0, 90, 0)).save(path)
        info = f"green triangle, {name}\nSteps: 20, Seed: 5, Size: 32x32"
        return NewImage(str(path), str(GUILD), str(ANN), info, parent_id=parent, relation=relation)

    upscale = await catalog.add(child("upscale", root, Relation.UPSCALE))
    await catalog.add(child("variation", root, Relation.VARIATION))
    frame = await catalog.add(child("frame", upscale.id, Relation.ANIMATION_FRAME))
    message = (await _browse(salon, query="upscale")).original
    assert _shown(message)[0] == [upscale.id]
    await _pick(salon, ANN, message, upscale.id)
    family = await salon.fake.click(ANN, message.id, message.find_button("Family"))
    await family.wait_done()
    shown = family.original
    assert family.ephemeral and shown.attachments[0].filename == "family.png"
    listing = shown.embeds[0]["description"]
    for image_id, relation in ((root, "original"), (upscale.id, "upscale ◀"), (frame.id, "animation frame")):
        assert f"**#{image_id}** {relation}" in listing, listing
    assert "variation" in listing and f"original #{root}" in shown.embeds[0]["footer"]["text"]


async def test_jump_to_a_page_in_a_modal(salon, seeded):  # noqa: F811
    message = (await _browse(salon)).original
    assert "page 1 of 2" in message.embeds[0]["footer"]["text"]

    async def jump(typed: str):
        asked = await salon.fake.click(ANN, message.id, message.find_button("Page…"))
        await asked.wait_acked()
        assert asked.modal is not None
        answer = await salon.fake.submit_modal(ANN, CHANNEL, asked.modal["custom_id"], {"page": typed})
        await answer.wait_acked()
        return answer

    await jump("2")
    assert "page 2 of 2" in message.embeds[0]["footer"]["text"]
    assert _shown(message)[0] == [seeded[i] for i in (2, 1, 0)]
    refused = await jump("9")
    await refused.wait_done()
    assert refused.ephemeral and "page 9 does not exist" in refused.original.content
    refused = await jump("two")
    await refused.wait_done()
    assert refused.ephemeral and "'two' is not a page number" in refused.original.content
    await salon.fake.click(ANN, message.id, message.find_button("⏮️"))
    await salon.fake.wait_for(lambda: "page 1 of 2" in message.embeds[0]["footer"]["text"], 10)
    await jump("last")
    assert "page 2 of 2" in message.embeds[0]["footer"]["text"]
