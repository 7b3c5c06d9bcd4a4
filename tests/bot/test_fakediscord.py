"""End-to-end tests of FakeDiscord with a tiny real discord.py bot."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands
from PIL import Image

from tests.bot.fakediscord import FakeDiscord, running_client

GUILD, CHANNEL, NSFW_CHANNEL = 1, 10, 11
ALICE, MOD, ADMIN, LONER = 2, 3, 4, 5
MODELS = ["sd15", "sdxl-base", "sdxl-turbo", "flux"]


class RenameModal(discord.ui.Modal, title="Rename the panel"):
    """Asks for a new panel name and edits the panel message."""

    name: discord.ui.TextInput = discord.ui.TextInput(
        label="New name", custom_id="rename:name", max_length=32
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"Panel: {self.name.value}")


class PanelView(discord.ui.View):
    """A persistent view with a fixed custom_id."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Rename", emoji="✏️", custom_id="panel:rename")
    async def rename(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_modal(RenameModal())


class VoteButton(discord.ui.DynamicItem[discord.ui.Button], template=r"vote:(?P<n>\d+)"):
    """A dynamic button whose state lives in its custom_id."""

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label=f"Vote {n}", custom_id=f"vote:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: object
    ) -> VoteButton:
        return cls(int(match["n"]))  # type: ignore[index]

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"voted {self.n}", ephemeral=True)


class GalleryView(discord.ui.View):
    """A per-message view with a string select that edits the message and adds a file."""

    @discord.ui.select(custom_id="gallery:pick", options=[discord.SelectOption(label=x) for x in ("a", "b")])
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        keep = interaction.message.attachments if interaction.message else []
        extra = discord.File(io.BytesIO(select.values[0].encode()), f"{select.values[0]}.txt")
        await interaction.response.edit_message(
            content=f"chose {select.values[0]}", attachments=[*keep, extra]
        )


class TinyBot(discord.Client):
    """A client with a guild command tree, a persistent view and raw reaction listeners."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.reactions: list[tuple[str, int, str]] = []
        self.errors: list[discord.HTTPException] = []
        self.release = asyncio.Event()
        self.seen: list[str] = []
        _register_commands(self)
        _register_more_commands(self)

    async def setup_hook(self) -> None:
        self.add_view(PanelView())
        self.add_dynamic_items(VoteButton)
        await self.tree.sync(guild=discord.Object(GUILD))

    async def on_message(self, message: discord.Message) -> None:
        if message.author != self.user:
            self.seen.append(message.content)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.reactions.append(("add", payload.user_id, str(payload.emoji)))

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        self.reactions.append(("remove", payload.user_id, str(payload.emoji)))


def _register_commands(bot: TinyBot) -> None:
    """The bot's slash commands, all synced to GUILD."""
    guild = discord.Object(GUILD)

    @bot.tree.command(guild=guild, description="Repeat text")
    async def echo(interaction: discord.Interaction, text: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content=text)

    @bot.tree.command(guild=guild, description="Show the panel")
    async def panel(interaction: discord.Interaction) -> None:
        view = PanelView()
        view.add_item(VoteButton(1))
        await interaction.response.send_message("Panel: untitled", view=view)

    @bot.tree.command(guild=guild, description="Reverse a file's bytes")
    async def flip(interaction: discord.Interaction, image: discord.Attachment, times: int = 1) -> None:
        data = await image.read()
        info = f"{image.filename} {image.content_type} {image.width}x{image.height} {times}"
        await interaction.response.send_message(
            info, file=discord.File(io.BytesIO(data[::-1]), "flipped.bin")
        )

    async def model_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=m, value=m) for m in MODELS if current in m]

    @bot.tree.command(guild=guild, description="Pick a model")
    @app_commands.autocomplete(model=model_choices)
    async def pick(interaction: discord.Interaction, model: str) -> None:
        await interaction.response.send_message(f"picked {model}", ephemeral=True)

    @bot.tree.command(guild=guild, description="Show what the bot knows about you")
    async def whoami(interaction: discord.Interaction) -> None:
        perms = interaction.user.guild_permissions  # type: ignore[union-attr]
        nsfw = interaction.channel.is_nsfw()  # type: ignore[union-attr]
        text = f"nsfw={nsfw} mod={perms.manage_messages} admin={perms.manage_guild}"
        await interaction.response.send_message(
            f"{text} here={interaction.permissions.manage_messages}", ephemeral=True
        )

    @bot.tree.command(guild=guild, description="Defer, wait for the test, then edit")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await bot.release.wait()
        try:
            await interaction.edit_original_response(content="done")
        except discord.HTTPException as exc:
            bot.errors.append(exc)

    config = app_commands.Group(name="config", description="Settings", guild_ids=[GUILD])

    @config.command(name="set", description="Set a value")
    async def config_set(interaction: discord.Interaction, key: str, value: int) -> None:
        await interaction.response.send_message(f"{key}={value}")

    bot.tree.add_command(config)


def _register_more_commands(bot: TinyBot) -> None:
    """Followups, selects with files, rejected messages and a message context menu."""
    guild = discord.Object(GUILD)

    @bot.tree.command(guild=guild, description="Think, then send two followups")
    async def steps(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("step 1")
        await interaction.followup.send("step 2", ephemeral=True)

    @bot.tree.command(guild=guild, description="A message with a file and a select")
    async def gallery(interaction: discord.Interaction) -> None:
        file = discord.File(io.BytesIO(b"first"), "first.txt")
        await interaction.response.send_message("pick one", file=file, view=GalleryView())

    @bot.tree.command(guild=guild, description="Send something Discord rejects first")
    async def long(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("x" * 2001)
        except discord.HTTPException as exc:
            bot.errors.append(exc)
        await interaction.response.send_message("ok")

    @bot.tree.command(guild=guild, description="Moderators only")
    @app_commands.default_permissions(manage_messages=True)
    async def purge(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("purged", ephemeral=True)

    @bot.tree.context_menu(name="Quote", guild=guild)
    async def quote(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(f"> {message.content}")


@pytest.fixture
async def env() -> AsyncIterator[tuple[FakeDiscord, TinyBot]]:
    """A fake Discord with one guild and a connected TinyBot; fails if the bot hit unknown routes."""
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD, "Salon test")
        fake.add_channel(GUILD, CHANNEL, "general")
        fake.add_channel(GUILD, NSFW_CHANNEL, "after-dark", nsfw=True)
        fake.add_user(ALICE, "alice", guild_id=GUILD)
        fake.add_user(MOD, "mod", guild_id=GUILD, moderator=True)
        fake.add_user(ADMIN, "admin", guild_id=GUILD, admin=True)
        fake.add_user(LONER, "loner", dms_open=False)
        bot = TinyBot()
        async with running_client(fake, bot):
            yield fake, bot
        assert fake.unknown_routes == []


def _png(width: int = 3, height: int = 2) -> bytes:
    """A tiny PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buf, "PNG")
    return buf.getvalue()


async def test_bot_logs_in_and_syncs_guild_commands(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert {c["name"] for c in fake.commands[GUILD]} == {
        "echo",
        "panel",
        "flip",
        "pick",
        "whoami",
        "slow",
        "config",
        "steps",
        "gallery",
        "long",
        "purge",
        "Quote",
    }
    assert bot.get_channel(NSFW_CHANNEL).is_nsfw()  # type: ignore[union-attr]
    assert [r.path for r in fake.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]


async def test_echo_defers_then_edits_the_original(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    inter = await fake.slash(ALICE, CHANNEL, "echo", {"text": "hello"})
    await inter.wait_done()
    assert [rtype for rtype, _ in inter.responses] == [5]
    assert inter.acked_at is not None and inter.acked_at - inter.created_at < 3
    msg = inter.original
    assert msg is not None and msg.content == "hello" and not msg.loading and len(msg.edits) == 1
    assert fake.channel_messages(CHANNEL) == [msg]


async def test_panel_button_modal_submit_edits_the_panel(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    inter = await fake.slash(ALICE, CHANNEL, "panel")
    await inter.wait_done()
    panel = inter.original
    assert panel is not None and panel.buttons() == [
        ("panel:rename", "Rename", "✏️"),
        ("vote:1", "Vote 1", None),
    ]
    click = await fake.click(ALICE, panel.id, panel.find_button("✏️"))
    await click.wait_acked()
    assert click.modal is not None and click.modal["title"] == "Rename the panel"
    submit = await fake.submit_modal(ALICE, CHANNEL, click.modal["custom_id"], {"rename:name": "Cats"})
    await submit.wait_done()
    assert [rtype for rtype, _ in submit.responses] == [7]
    assert submit.original is panel and panel.content == "Panel: Cats"


async def test_persistent_view_and_dynamic_item_survive_a_restart(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    old = fake.new_message(CHANNEL, {"content": "Panel: old", "components": PanelView().to_components()}, [])
    click = await fake.click(ALICE, old.id, "panel:rename")
    await click.wait_acked()
    assert click.modal is not None
    old.components = [
        {"type": 1, "components": [{"type": 2, "style": 1, "label": "Vote 7", "custom_id": "vote:7"}]}
    ]
    vote = await fake.click(MOD, old.id, "vote:7")
    await vote.wait_done()
    assert vote.ephemeral and vote.original is not None and vote.original.content == "voted 7"
    assert vote.original not in fake.channel_messages(CHANNEL)
    assert vote.original in fake.channel_messages(CHANNEL, include_ephemeral_for=MOD)


async def test_attachment_option_round_trips_bytes(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    png = _png()
    inter = await fake.slash(
        ALICE, CHANNEL, "flip", {"times": 2}, attachments={"image": ("cat.png", png, "image/png")}
    )
    await inter.wait_done()
    msg = inter.original
    assert msg is not None and msg.content == "cat.png image/png 3x2 2"
    (out,) = msg.attachments
    assert out.filename == "flipped.bin" and out.data == png[::-1]
    async with aiohttp.ClientSession() as session, session.get(out.url) as resp:
        assert await resp.read() == png[::-1]
    (callback,) = [r for r in fake.requests if r.path.endswith("/callback")]
    assert callback.json["type"] == 4 and callback.files[0].data == png[::-1]


async def test_autocomplete_returns_the_bots_choices(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    choices = await fake.autocomplete(ALICE, CHANNEL, "pick", {"model": "sdxl"}, "model")
    assert [c["name"] for c in choices] == ["sdxl-base", "sdxl-turbo"]
    inter = await fake.slash(ALICE, CHANNEL, "pick", {"model": "flux"})
    await inter.wait_done()
    assert inter.ephemeral and inter.original is not None and inter.original.content == "picked flux"


async def test_subcommands_and_option_types_are_checked(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    inter = await fake.slash(ALICE, CHANNEL, "config", {"key": "steps", "value": 30}, subcommand="set")
    await inter.wait_done()
    assert inter.original is not None and inter.original.content == "steps=30"
    with pytest.raises(TypeError):
        await fake.slash(ALICE, CHANNEL, "config", {"key": "steps", "value": "30"}, subcommand="set")
    with pytest.raises(ValueError, match="needs a subcommand"):
        await fake.slash(ALICE, CHANNEL, "config", {"key": "steps", "value": 30})
    with pytest.raises(LookupError, match="not registered"):
        await fake.slash(ALICE, CHANNEL, "nope")
    with pytest.raises(LookupError, match="unknown option"):
        await fake.slash(ALICE, CHANNEL, "echo", {"txt": "x"})


async def test_permissions_and_nsfw_reach_the_bot(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    expected = {
        (ALICE, CHANNEL): "nsfw=False mod=False admin=False here=False",
        (MOD, NSFW_CHANNEL): "nsfw=True mod=True admin=False here=True",
        (ADMIN, CHANNEL): "nsfw=False mod=True admin=True here=True",
    }
    for (user, channel), text in expected.items():
        inter = await fake.slash(user, channel, "whoami")
        await inter.wait_done()
        assert inter.original is not None and inter.original.content == text


async def test_default_member_permissions_hide_commands(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    with pytest.raises(PermissionError):
        await fake.slash(ALICE, CHANNEL, "purge")
    for user in (MOD, ADMIN):
        inter = await fake.slash(user, CHANNEL, "purge")
        await inter.wait_done()
        assert inter.original is not None and inter.original.content == "purged"


async def test_raw_reactions_reach_the_bot(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    channel = bot.get_channel(CHANNEL)
    sent = await channel.send("react here")  # type: ignore[union-attr]
    await sent.add_reaction("✅")
    assert fake.messages[sent.id].reactions == {"✅": {fake.bot_user_id}}
    await fake.react(ALICE, sent.id, "👍")
    await fake.wait_for(lambda: ("add", ALICE, "👍") in bot.reactions, 5)
    await fake.unreact(ALICE, sent.id, "👍")
    await fake.wait_for(lambda: ("remove", ALICE, "👍") in bot.reactions, 5)
    assert fake.messages[sent.id].reactions == {"✅": {fake.bot_user_id}}
    assert ("add", fake.bot_user_id, "✅") in bot.reactions


async def test_double_acknowledgement_gets_40060(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    inter = await fake.slash(ALICE, CHANNEL, "panel")
    await inter.wait_done()
    url = f"{fake.base_url}/interactions/{inter.id}/{inter.token}/callback"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"type": 4, "data": {"content": "x"}}) as r,
    ):
        assert r.status == 400 and (await r.json())["code"] == 40060
    assert len(inter.responses) == 1


async def test_expired_token_gives_401(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    inter = await fake.slash(ALICE, CHANNEL, "slow")
    await inter.wait_acked()
    fake.expire(inter)
    bot.release.set()
    await fake.wait_for(lambda: bool(bot.errors), 5)
    assert (bot.errors[0].status, bot.errors[0].code) == (401, 50027)
    assert inter.original is not None and inter.original.loading


async def test_rate_limit_is_honoured(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    fake.rate_limit_next(f"/channels/{CHANNEL}/messages", retry_after=0.05)
    start = time.monotonic()
    await bot.get_channel(CHANNEL).send("after the limit")  # type: ignore[union-attr]
    assert time.monotonic() - start >= 0.05
    sends = [r.status for r in fake.requests if r.path == f"/channels/{CHANNEL}/messages"]
    assert sends == [429, 200] and fake.last_message(CHANNEL).content == "after the limit"


async def test_a_held_rate_limit_refuses_the_route_until_it_ends(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    path = f"/channels/{CHANNEL}/messages"
    fake.rate_limit_next(path, 0.3, method="POST", when=lambda r: "second" in str(r.json), hold=True)

    async def send(http: aiohttp.ClientSession, text: str) -> tuple[int, dict, dict]:
        headers = {"Authorization": f"Bot {FakeDiscord.TOKEN}"}
        async with http.post(fake.base_url + path, json={"content": text}, headers=headers) as response:
            return response.status, dict(response.headers), await response.json()

    async with aiohttp.ClientSession() as http:
        assert (await send(http, "first"))[0] == 200  # `when` lets it through
        status, headers, body = await send(http, "second")
        assert (status, body["retry_after"], headers["X-RateLimit-Bucket"]) == (429, 0.3, "fake-bucket")
        status, headers, body = await send(http, "third")  # within the hold: another 429, with the time left
        assert status == 429 and 0 < body["retry_after"] < 0.3 and headers["Retry-After"] == "1"
        await asyncio.sleep(0.3)
        assert (await send(http, "fourth"))[0] == 200
    first, second = fake.rate_limited
    assert fake.after(first) is second and second.at - first.at < 0.3


async def test_before_answer_acts_before_the_bot_has_the_answer(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    path = f"/channels/{CHANNEL}/messages"

    async def react_and_wait_until_seen(request) -> None:
        await fake.react(ALICE, fake.last_message(CHANNEL).id, "👍")
        await fake.wait_for(lambda: bool(bot.reactions), 5)

    fake.before_answer(lambda r: r.method == "POST" and r.path == path, react_and_wait_until_seen)
    await bot.get_channel(CHANNEL).send("react to me")  # type: ignore[union-attr]
    assert bot.reactions == [("add", ALICE, "👍")]  # handled before send() returned
    await bot.get_channel(CHANNEL).send("once only")  # type: ignore[union-attr]
    assert len(bot.reactions) == 1


async def test_dms_and_closed_dms(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    alice = await bot.fetch_user(ALICE)
    await alice.send("your image is ready")
    assert [m.content for m in fake.dms(ALICE)] == ["your image is ready"]
    loner = await bot.fetch_user(LONER)
    with pytest.raises(discord.Forbidden) as info:
        await loner.send("hello?")
    assert info.value.code == 50007


async def test_bad_token_raises_login_failure() -> None:
    async with FakeDiscord() as fake:
        client = discord.Client(intents=discord.Intents.default())
        with fake.patch_discord(), pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
        await client.close()
        assert fake.requests[0].status == 401


async def test_first_followup_replaces_the_thinking_message(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    inter = await fake.slash(ALICE, CHANNEL, "steps")
    await fake.wait_for(lambda: len(inter.followups) == 1, 5)
    assert inter.original is not None and inter.original.content == "step 1" and inter.ephemeral
    assert [m.content for m in inter.followups] == ["step 2"] and inter.followups[0].ephemeral
    assert fake.channel_messages(CHANNEL) == []


async def test_select_edit_keeps_listed_attachments(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, _ = env
    inter = await fake.slash(ALICE, CHANNEL, "gallery")
    await inter.wait_done()
    msg = inter.original
    assert msg is not None and [f.data for f in msg.attachments] == [b"first"]
    with pytest.raises(ValueError):
        await fake.select(ALICE, msg.id, "gallery:pick", ["c"])
    pick = await fake.select(ALICE, msg.id, "gallery:pick", ["b"])
    await pick.wait_done()
    assert msg.content == "chose b" and [f.filename for f in msg.attachments] == ["first.txt", "b.txt"]
    assert msg.edits[-1].payload["content"] == "chose b"


async def test_rejected_message_reaches_the_bot_as_an_error(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    inter = await fake.slash(ALICE, CHANNEL, "long")
    await inter.wait_done()
    assert (bot.errors[0].status, bot.errors[0].code) == (400, 50035)
    assert inter.original is not None and inter.original.content == "ok"
    assert [r.status for r in fake.error_responses] == [400]


async def test_user_messages_history_and_context_menu(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    first = await fake.say(ALICE, CHANNEL, "no content intent")
    said = await fake.say(ALICE, CHANNEL, f"<@{fake.bot_user_id}> hi")
    await fake.wait_for(lambda: len(bot.seen) == 2, 5)
    assert bot.seen == ["", f"<@{fake.bot_user_id}> hi"]
    history = [m async for m in bot.get_channel(CHANNEL).history(limit=5)]  # type: ignore[union-attr]
    assert [m.id for m in history] == [said.id, first.id]
    quote = await fake.context_menu(MOD, CHANNEL, "Quote", said.id)
    await quote.wait_done()
    assert quote.original is not None and quote.original.content == f"> <@{fake.bot_user_id}> hi"


async def test_unknown_routes_are_recorded(env: tuple[FakeDiscord, TinyBot]) -> None:
    fake, bot = env
    with pytest.raises(discord.NotFound):
        await bot.get_channel(CHANNEL).pins()  # type: ignore[union-attr]
    assert fake.unknown_routes == [f"GET /api/v10/channels/{CHANNEL}/messages/pins"]
    fake.unknown_routes.clear()
