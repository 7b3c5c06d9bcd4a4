"""Discord's rate limits as this process has met them: until when each route may not be called again.

discord.py waits out a 429 inside the request that got it, and only there: once that request is cancelled
(or gives up), the next call to the same route goes out at once and earns another 429, and invalid requests
count towards Discord's ban of the bot. Every answer passes through `trace()` (the client's aiohttp trace),
so a 429, or a bucket with no requests left, is remembered until it resets; `wait()` holds a call until then.

Routes are told apart as Discord's buckets are: method, path with message ids left out, and the channel or
interaction token (its major parameter). A global 429 holds every route.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping

import aiohttp

log = logging.getLogger(__name__)

_SCOPED = re.compile(r"/(webhooks/\d+/[^/]+|channels/\d+)(/[^?]*)?$")  # the major parameter, then the rest
_IDS = re.compile(r"/(?:\d+|@original)(?=/|$)")  # message (or reaction user) ids: one bucket for them all
_KEPT = 256  # routes remembered before expired entries are dropped
_DEFAULT_RETRY_S = 1.0  # a 429 whose headers say nothing usable


def route_key(method: str, path: str) -> str | None:
    """The bucket a call belongs to, e.g. `PATCH channels/110/messages/{id}`; None outside channels and
    webhooks (those are not followed here)."""
    match = _SCOPED.search(path)
    if match is None:
        return None
    return f"{method.upper()} {match.group(1)}{_IDS.sub('/{id}', match.group(2) or '')}"


class RateLimits:
    """Until when each route is limited, learned from Discord's answers."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}  # route key → time.monotonic() it may be called again
        self._global_until = 0.0

    def trace(self) -> aiohttp.TraceConfig:
        """The aiohttp trace to give the client (`http_trace=`): it reports every answer here."""
        config = aiohttp.TraceConfig()
        config.on_request_end.append(self._on_request_end)
        return config

    async def _on_request_end(self, session, context, params: aiohttp.TraceRequestEndParams) -> None:
        response = params.response
        self.learn(params.method, params.url.path, response.status, response.headers)

    def learn(self, method: str, path: str, status: int, headers: Mapping[str, str]) -> None:
        """Remember what one answer says about its route's limit."""
        seconds = _limited_for(status, headers)
        if seconds <= 0:
            return
        until = time.monotonic() + seconds
        if status == 429:
            log.info("Discord rate-limited %s %s for %.2f s", method, _redacted(path), seconds)
        if (
            headers.get("X-RateLimit-Global", "").lower() == "true"
            or headers.get("X-RateLimit-Scope") == "global"
        ):
            self._global_until = max(self._global_until, until)
            return
        key = route_key(method, path)
        if key is None:
            return
        if len(self._until) >= _KEPT:
            now = time.monotonic()
            self._until = {k: t for k, t in self._until.items() if t > now}
        self._until[key] = max(self._until.get(key, 0.0), until)

    def ready_at(self, method: str, path: str) -> float:
        """The time.monotonic() from which this call may go out (in the past when it may go now)."""
        key = route_key(method, path)
        return max(self._global_until, self._until.get(key, 0.0) if key else 0.0)

    async def wait(self, method: str, path: str) -> float:
        """Sleep until this call may go out; returns the seconds waited."""
        waited = 0.0
        while (delay := self.ready_at(method, path) - time.monotonic()) > 0:
            await asyncio.sleep(delay)
            waited += delay
        return waited


def _limited_for(status: int, headers: Mapping[str, str]) -> float:
    """Seconds the route is limited for after this answer: a 429's wait, or the reset of an emptied bucket."""
    reset_after = _seconds(headers.get("X-RateLimit-Reset-After"))
    if status == 429:
        retry_after = _seconds(headers.get("Retry-After"))
        if reset_after is None and retry_after is None:
            return _DEFAULT_RETRY_S
        return max(reset_after or 0.0, retry_after or 0.0)
    if 200 <= status < 300 and headers.get("X-RateLimit-Remaining") == "0":
        return reset_after or 0.0
    return 0.0


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _redacted(path: str) -> str:
    """The path without an interaction token (a credential for 15 minutes)."""
    return re.sub(r"(/webhooks/\d+/)[^/]+", r"\1…", path)
