"""The acknowledgement comes first: a command that queues a job defers before it reads the database, so a slow
or busy database (or a queue behind it) never costs Discord's 3 s."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from tests.bot.conftest import ANN, CHANNEL

HOLD_S = 30.0  # generous: the handler stays blocked until the test releases it


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class Held:
    """The community store and the queue of a running bot, each call blocked until `release`."""

    def __init__(self, salon) -> None:
        self.gate = asyncio.Event()
        self.reached: list[str] = []
        services = salon.services
        for name, store, method in (
            ("community", services.community, "effective"),
            ("queue", services.queue, "submit"),
        ):
            setattr(store, method, self._held(name, getattr(store, method)))

    def _held(self, name, method):
        async def blocked(*args, **kwargs):
            self.reached.append(name)
            await asyncio.wait_for(self.gate.wait(), HOLD_S)
            return await method(*args, **kwargs)

        return blocked

    def release(self) -> None:
        self.gate.set()


async def test_imagine_is_acknowledged_while_the_database_is_blocked(salon):
    held = Held(salon)
    interaction = await salon.imagine(seed=77)
    await salon.fake.wait_for(
        lambda: interaction.acked_at is not None and held.reached, 20, "the deferral and a blocked read"
    )
    assert interaction.responses[0][0] == 5  # deferred ("thinking…"), not answered
    assert held.reached == ["community"]  # the handler waits on the database: nothing was submitted
    assert await salon.services.queue.store.recent() == []
    held.release()
    result = await salon.result(interaction)
    assert "seed 77" in result.content and held.reached == ["community", "queue"]


async def test_img2img_is_acknowledged_before_its_upload_and_the_database(salon):
    held = Held(salon)
    interaction = await salon.fake.slash(
        ANN,
        CHANNEL,
        "img2img",
        {"prompt": "a blue square", "steps": 6, "width": 64, "height": 64},
        attachments={"image": ("start.png", _png(), "image/png")},
    )
    await salon.fake.wait_for(
        lambda: interaction.acked_at is not None and held.reached, 20, "the deferral and a blocked read"
    )
    assert interaction.responses[0][0] == 5 and held.reached == ["community"]
    held.release()
    await salon.result(interaction)
    assert held.reached == ["community", "queue"]


async def test_a_refusal_found_after_the_deferral_is_still_the_askers_only(salon):
    held = Held(salon)
    interaction = await salon.imagine(width=100)
    await salon.fake.wait_for(lambda: interaction.acked_at is not None and held.reached, 20, "the deferral")
    held.release()
    await interaction.wait_done()

    def shown():
        return [m for m in (interaction.original, *interaction.followups) if m is not None and not m.deleted]

    await salon.fake.wait_for(lambda: shown() and all(m.ephemeral for m in shown()), 10, "the refusal")
    assert "**width**: 100 is not a multiple of 8" in shown()[-1].content
    assert await salon.services.queue.store.recent() == []  # the queue's check refused it: no job
