"""The command tree: every command and option described, autocomplete answers, registration only on change."""

from __future__ import annotations

from discord import app_commands

from engine.demo import DEMO_MODEL_NAME
from tests.bot.conftest import ANN, CHANNEL, GUILD

EXPECTED = {
    "imagine",
    "img2img",
    "inpaint",
    "pnginfo",
    "browse",
    "models",
    "loras",
    "embeddings",
    "queue",
    "cancel",
    "settings",
}


async def test_every_command_and_option_has_a_description(salon):
    tree = salon.bot.tree
    names = {command.qualified_name.split()[0] for command in tree.walk_commands()}
    assert EXPECTED <= names
    missing = []
    for command in tree.walk_commands():
        if not command.description or command.description == "…":
            missing.append(command.qualified_name)
        if isinstance(command, app_commands.Command):
            missing += [
                f"{command.qualified_name} {p.name}" for p in command.parameters if p.description == "…"
            ]
    assert missing == []
    registered = {command["name"] for command in salon.fake.commands[GUILD]}
    assert EXPECTED <= registered


async def test_autocomplete_for_models_samplers_and_schedules(salon):
    models = await salon.fake.autocomplete(ANN, CHANNEL, "imagine", {"prompt": "x", "model": "demo"}, "model")
    assert [choice["value"] for choice in models] == [DEMO_MODEL_NAME]
    samplers = await salon.fake.autocomplete(
        ANN, CHANNEL, "imagine", {"prompt": "x", "sampler": "dpm++ 2"}, "sampler"
    )
    assert samplers[0]["value"].startswith("DPM++ 2")
    schedules = await salon.fake.autocomplete(
        ANN, CHANNEL, "imagine", {"prompt": "x", "schedule": "kar"}, "schedule"
    )
    assert [choice["value"] for choice in schedules] == ["Karras"]


async def test_lists_of_installed_files(salon):
    listing = await salon.fake.slash(ANN, CHANNEL, "models", {})
    await listing.wait_done()
    assert listing.ephemeral and DEMO_MODEL_NAME in listing.original.content
    loras = await salon.fake.slash(ANN, CHANNEL, "loras", {})
    await loras.wait_done()
    assert "none installed" in loras.original.content


async def test_commands_are_registered_again_only_when_they_change(salon):
    puts = lambda: [r for r in salon.fake.requests if r.method == "PUT" and r.path.endswith("/commands")]  # noqa: E731
    assert len(puts()) == 1
    await salon.restart()
    assert len(puts()) == 1
