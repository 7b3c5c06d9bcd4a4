"""What the bot learns from Discord's rate-limit answers (bot/ratelimits.py), without a client."""

from __future__ import annotations

import time

from bot.ratelimits import RateLimits, route_key

TOKEN = "aW50ZXJhY3Rpb24.abc-DEF_12"
REPLY = f"/api/v10/webhooks/1000/{TOKEN}/messages/@original"


def test_routes_are_told_apart_as_discord_buckets_them():
    assert route_key("PATCH", REPLY) == f"PATCH webhooks/1000/{TOKEN}/messages/{{id}}"
    assert route_key("PATCH", f"/api/v10/webhooks/1000/{TOKEN}/messages/123") == route_key("PATCH", REPLY)
    edit = route_key("PATCH", "/api/v10/channels/110/messages/5")
    assert edit == route_key("patch", "/channels/110/messages/6") == "PATCH channels/110/messages/{id}"
    assert edit != route_key("PATCH", "/channels/111/messages/5")
    assert edit != route_key("POST", "/channels/110/messages")
    assert route_key("GET", "/api/v10/users/@me") is None


def test_a_429_holds_its_route_and_a_global_one_holds_every_route():
    limits = RateLimits()
    now = time.monotonic()
    limits.learn("PATCH", REPLY, 429, {"Retry-After": "2", "X-RateLimit-Reset-After": "1.500"})
    assert limits.ready_at("PATCH", f"/webhooks/1000/{TOKEN}/messages/@original") >= now + 2  # the longer
    assert limits.ready_at("PATCH", "/channels/110/messages/5") <= now  # another route is free
    limits.learn(
        "POST", "/channels/110/messages", 200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1"}
    )
    assert (
        limits.ready_at("POST", "/channels/110/messages") >= now + 1
    )  # an emptied bucket waits for its reset
    limits.learn("POST", "/channels/110/messages", 200, {"X-RateLimit-Remaining": "3"})
    limits.learn("GET", "/users/@me", 429, {"Retry-After": "3", "X-RateLimit-Global": "true"})
    assert limits.ready_at("PATCH", "/channels/110/messages/5") >= now + 3


async def test_wait_sleeps_until_the_route_is_free():
    limits = RateLimits()
    learned = time.monotonic()
    limits.learn("PATCH", REPLY, 429, {"X-RateLimit-Reset-After": "0.2", "Retry-After": "nonsense"})
    assert await limits.wait("PATCH", REPLY) > 0
    assert time.monotonic() - learned >= 0.2
    assert await limits.wait("PATCH", REPLY) == 0.0
