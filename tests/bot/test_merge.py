"""`/merge` through the fake Discord: only members with Manage Server may merge; a merge of the session's tiny
checkpoint is queued as the `merge` job and the reply names the new checkpoint with its short hash; a name
that is taken is refused (never overwritten), as is a model that is not installed, by option."""

from __future__ import annotations

import shutil

import pytest

from engine.models.registry import sha256_file
from tests.bot.conftest import ADMIN, ANN, CHANNEL
from tests.bot.test_commands import _refused

NAME = "merged-by-bot"


@pytest.fixture
def cleanup(salon):
    folder = salon.settings.models_path / "Stable-diffusion"
    yield folder
    for path in folder.glob(f"{NAME}*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    salon.services.registry.refresh()
    salon.engine.registry.refresh()


def _shown(interaction):
    return [m for m in (interaction.original, *interaction.followups) if m is not None and not m.deleted]


async def test_merge_is_for_admins_and_answers_with_the_name_and_hash(salon, cleanup):
    options = {"a": "tiny", "name": NAME, "mode": "no-interpolation"}
    refused = await salon.fake.slash(ANN, CHANNEL, "merge", options, force=True)
    assert "only members with Manage Server can merge checkpoints" in await _refused(refused)
    assert await salon.services.queue.store.recent() == []

    done = await salon.fake.slash(ADMIN, CHANNEL, "merge", {**options, "multiplier": 0.5})
    await salon.fake.wait_for(lambda: any("✅" in m.content for m in _shown(done)), 120, "the merge")
    message = next(m for m in _shown(done) if "✅" in m.content)
    merged = cleanup / f"{NAME}.safetensors"
    assert f"merged **{NAME}** [{sha256_file(merged)[:10]}]" in message.content
    assert "no-interpolation, M=0.5" in message.content and f"/imagine model:{NAME}" in message.content

    taken = await salon.fake.slash(ADMIN, CHANNEL, "merge", options)
    assert "**name**" in (text := await _refused(taken)) and "never overwrites" in text
    missing = await salon.fake.slash(ADMIN, CHANNEL, "merge", {"a": "tiny", "b": "nope", "name": "other"})
    assert "**B**" in (text := await _refused(missing)) and "nope" in text
