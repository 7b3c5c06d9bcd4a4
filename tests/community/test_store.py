"""Per-guild and per-channel settings: parsing, overlay, limits that only lower, prompt rules, browse sessions.

The tests with the `store` fixture (tests/community/conftest.py) run on `community.db` and on PostgreSQL."""

from __future__ import annotations

import pytest

from commands.styles import apply_style, load_styles, merge_prompt
from community.settings import CommunitySettings
from config import Limits
from core.errors import InvalidRequest
from engine.requests import GenerationRequest


async def test_channel_values_win_over_the_guild_and_guilds_are_apart(store):
    await store.set("g1", "max_steps", "40", "admin")
    await store.set("g1", "max_steps", "10", "admin", channel="c2")
    await store.set("g1", "banned_words", "Spider, snake", "admin")
    assert (await store.effective("g1", "c1")).max_steps == 40
    assert (await store.effective("g1", "c2")).max_steps == 10
    assert (await store.effective("g1", "c2")).banned_words == ("spider", "snake")
    assert (await store.effective("g2", "c2")).max_steps is None
    assert await store.reset("g1", "max_steps", channel="c2")
    assert (await store.effective("g1", "c2")).max_steps == 40


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_steps", "0", "max_steps: '0' is not a whole number of 1 or more"),
        ("max_steps", "ten", "max_steps: 'ten' is not a whole number"),
        ("nsfw_policy", "sometimes", "nsfw_policy: 'sometimes' is not one of: age-restricted, allow"),
        ("gallery_channel", "general", "gallery_channel: 'general' is not a channel"),
        ("default_size", "100x64", "default_size: '100x64': both sides must be multiples of 8"),
        ("colour", "red", "key: 'colour' is not a setting"),
    ],
)
async def test_bad_values_are_refused_by_name(store, key, value, message):
    with pytest.raises(InvalidRequest) as error:
        await store.set("g", key, value, "admin")
    assert str(error.value).startswith(message)
    assert await store.values("g") == {}


def test_limits_only_lower_the_machine_limits():
    base = Limits(max_steps=50, max_width=1024, max_height=1024)
    lowered = CommunitySettings(max_steps=80, max_size=512, max_batch=2).limits(base)
    assert (lowered.max_steps, lowered.max_width, lowered.max_height) == (50, 512, 512)
    assert (lowered.max_batch_size, lowered.max_batch_count) == (2, 2)


def test_prompt_rules_banned_words_nsfw_and_negative_prefix():
    community = CommunitySettings(
        banned_words=("spider",), nsfw_words=("gore",), negative_prefix="lowres", max_batch=2
    )
    with pytest.raises(InvalidRequest, match="'spider' is not allowed"):
        community.check_prompt(GenerationRequest("a Spider, red"), age_restricted=True)
    assert community.check_prompt(GenerationRequest("spiderweb"), age_restricted=False) is False
    with pytest.raises(InvalidRequest, match="age-restricted channel"):
        community.check_prompt(GenerationRequest("gore scene"), age_restricted=False)
    assert community.check_prompt(GenerationRequest("gore scene"), age_restricted=True) is True
    assert (
        community.check_prompt(GenerationRequest("a cat", negative_prompt="gore"), age_restricted=False)
        is False
    )
    applied = community.apply(GenerationRequest("a cat", negative_prompt="blurry"), Limits())
    assert applied.negative_prompt == "lowres, blurry"
    assert community.apply(applied, Limits()).negative_prompt == "lowres, blurry"
    with pytest.raises(InvalidRequest, match="at most 2 per command"):
        community.apply(GenerationRequest("a cat", batch_size=2, batch_count=2), Limits())


async def test_browse_sessions_remember_page_selection_and_message(store):
    session = await store.new_browse("g", "c", "u", {"keyword": "cat"})
    await store.move_browse(session.id, 3, 17, "999")
    await store.move_browse(session.id, 4, None)
    again = await store.browse(session.id)
    assert (again.page, again.selected, again.message, again.options) == (4, None, "999", {"keyword": "cat"})
    assert await store.browse(session.id + 1) is None


def test_styles_merge_like_a1111(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text('name,prompt,negative_prompt\nNoir,"{prompt}, black and white",colour\nPlain,,\n')
    styles = load_styles(path)
    assert apply_style(styles, "noir", "a cat", "blurry") == ("a cat, black and white", "blurry, colour")
    assert apply_style(styles, "Plain", "a cat", "") == ("a cat", "")
    assert merge_prompt("oil painting", "a cat") == "a cat, oil painting"
    with pytest.raises(InvalidRequest, match="no style named 'pop'"):
        apply_style(styles, "pop", "a cat", "")


async def test_schedules_are_set_replaced_run_and_dropped(store):
    await store.set_schedule("g1", "digest", "0 9 * * *", "mod", {"period": "daily"})
    await store.set_schedule("g1", "digest", "0 18 * * fri", "mod2", {"period": "weekly"})
    await store.set_schedule("g0", "purge", "0 3 * * *", "mod")
    await store.ran("g1", "digest", 1234.5)
    rows = await store.schedules()
    assert [(r["guild"], r["kind"], r["cron"], r["options"], r["set_by"]) for r in rows] == [
        ("g0", "purge", "0 3 * * *", {}, "mod"),
        ("g1", "digest", "0 18 * * fri", {"period": "weekly"}, "mod2"),
    ]
    assert (rows[0]["last_run"], rows[1]["last_run"]) == (None, 1234.5)
    assert await store.drop_schedule("g1", "digest") and not await store.drop_schedule("g1", "digest")
    assert [r["guild"] for r in await store.schedules()] == ["g0"]


async def test_a_digest_is_claimed_once_then_recorded(store):
    assert await store.digest("g", "2024-W01") is None
    assert await store.claim_digest("g", "2024-W01", "chan") is True
    assert await store.claim_digest("g", "2024-W01", "other") is False  # claimed already: the first stays
    claimed = await store.digest("g", "2024-W01")
    assert (claimed["channel"], claimed["message"]) == ("chan", None)
    await store.record_digest("g", "2024-W01", "777")
    assert (await store.digest("g", "2024-W01"))["message"] == "777"
    assert await store.digest("g", "2024-W02") is None


async def test_web_links_are_kept_renewed_revoked_and_checked(store):
    secret, other_secret = b"s" * 32, b"t" * 32
    token = await store.web_link("100", "mod", secret)
    assert await store.web_link("100", "someone", secret) == token  # kept until renewed
    assert await store.guild_of_token(token, secret) == "100"
    assert await store.guild_of_token(token, other_secret) is None  # signed with another secret: forged
    assert await store.guild_of_token("100.x", secret) is None
    assert await store.guild_of_token(token.replace("100.", "200.", 1), secret) is None
    renewed = await store.web_link("100", "mod", secret, renew=True)
    assert renewed != token
    assert await store.guild_of_token(token, secret) is None  # the old link no longer opens
    assert await store.guild_of_token(renewed, secret) == "100"
    assert await store.revoke_web_link("100") and not await store.revoke_web_link("100")
    assert await store.guild_of_token(renewed, secret) is None


async def test_setting_values_come_back_with_their_types(store):
    await store.set("g", "gallery_min_rank", "4.5", "mod")
    await store.set("g", "gallery_stars", "0", "mod")
    await store.set("g", "nsfw_words", "gore, blood", "mod")
    await store.set("g", "gallery_channel", "<#123>", "mod", channel="c")
    assert await store.values("g") == {
        "gallery_min_rank": 4.5,
        "gallery_stars": 0,
        "nsfw_words": ["gore", "blood"],
    }
    effective = await store.effective("g", "c")
    assert (effective.gallery_min_rank, effective.gallery_stars, effective.nsfw_words) == (
        4.5,
        0,
        ("gore", "blood"),
    )
    assert effective.gallery_channel == "123" and (await store.effective("g")).gallery_channel is None
    assert await store.effective(None) == type(effective)()
    with pytest.raises(InvalidRequest, match="'colour' is not a setting"):
        await store.reset("g", "colour")
    assert not await store.reset("g", "max_steps")
