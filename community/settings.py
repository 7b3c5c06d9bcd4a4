"""Per-guild and per-channel settings of a community (`/settings`), and how they shape a request.

A guild's values apply in all its channels; a channel's own values win over the guild's. Limits may only
lower the machine's limits (config.Limits), never raise them. Values are kept as text in the community store
(community/store.py), parsed by the same `SettingSpec` that checks what a moderator types.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config import Limits
from core.errors import InvalidRequest
from engine.requests import GenerationRequest
from engine.validation import parse_size

NSFW_POLICIES = ("age-restricted", "allow")


def _positive_int(option: str, text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise InvalidRequest(option, f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _number(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(option, f"{text!r} is not a number") from None
    if not value > 0:
        raise InvalidRequest(option, f"{text!r} is not above 0")
    return value


def _count(option: str, text: str) -> int:
    if not text.strip().isdigit() or int(text) > 1_000_000:
        raise InvalidRequest(option, f"{text!r} is not a whole number from 0 (off) up")
    return int(text)


def _rank(option: str, text: str) -> float:
    value = _number(option, text)
    if not 1 <= value <= 5:
        raise InvalidRequest(option, f"{text!r} is not a mean rank from 1 to 5")
    return value


def _words(option: str, text: str) -> list[str]:
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    if any(len(word) > 100 for word in words) or len(words) > 500:
        raise InvalidRequest(option, "at most 500 comma-separated words of up to 100 characters")
    return words


def _text(option: str, text: str) -> str:
    if len(text) > 1000:
        raise InvalidRequest(option, "at most 1000 characters")
    return text.strip()


def _policy(option: str, text: str) -> str:
    value = text.strip().lower()
    if value not in NSFW_POLICIES:
        raise InvalidRequest(option, f"{text!r} is not one of: {', '.join(NSFW_POLICIES)}")
    return value


def _channel(option: str, text: str) -> str:
    match = re.fullmatch(r"\s*<?#?(\d{1,20})>?\s*", text)
    if match is None:
        raise InvalidRequest(option, f"{text!r} is not a channel (mention it, e.g. #gallery, or give its id)")
    return match.group(1)


def _size(option: str, text: str) -> str:
    width, height = parse_size(text)
    if width % 8 or height % 8 or min(width, height) < 64:
        raise InvalidRequest(option, f"{text!r}: both sides must be multiples of 8, at least 64")
    return f"{width}x{height}"


@dataclass(frozen=True)
class SettingSpec:
    key: str
    description: str
    parse: Callable[[str, str], Any]


SETTINGS: dict[str, SettingSpec] = {
    spec.key: spec
    for spec in (
        SettingSpec("max_steps", "most sampling steps one image may ask for", _positive_int),
        SettingSpec("max_size", "largest width and height in pixels", _positive_int),
        SettingSpec("max_batch", "most images one command may ask for (batch size × count)", _positive_int),
        SettingSpec("max_pending_per_user", "jobs one person may have waiting or running", _positive_int),
        SettingSpec("negative_prefix", "text put before every negative prompt", _text),
        SettingSpec("banned_words", "comma-separated words refused in prompts", _words),
        SettingSpec(
            "nsfw_words",
            "comma-separated words that make a prompt NSFW (allowed only in age-restricted channels)",
            _words,
        ),
        SettingSpec(
            "nsfw_policy",
            "age-restricted: NSFW prompts and images only in age-restricted channels; allow: anywhere",
            _policy,
        ),
        SettingSpec("gallery_channel", "channel where the community's best images are posted", _channel),
        SettingSpec("gallery_min_rank", "mean rank (1–5) that sends an image to the gallery channel", _rank),
        SettingSpec(
            "gallery_min_ratings", "ratings the mean rank needs first (0: rank never counts)", _count
        ),
        SettingSpec(
            "gallery_stars", "⭐ that send an image to the gallery channel (0: stars never count)", _count
        ),
        SettingSpec("default_model", "checkpoint used when a command names none", _text),
        SettingSpec("default_sampler", "sampler used when a command names none", _text),
        SettingSpec("default_steps", "steps used when a command gives none", _positive_int),
        SettingSpec("default_cfg_scale", "CFG scale used when a command gives none", _number),
        SettingSpec("default_size", "WIDTHxHEIGHT used when a command gives none", _size),
        SettingSpec(
            "default_upscaler", "model upscaler of the U1–U4 buttons (models/ESRGAN…; empty: Latent)", _text
        ),
    )
}


@dataclass(frozen=True)
class CommunitySettings:
    """The settings in force in one channel (guild values overlaid with the channel's)."""

    max_steps: int | None = None
    max_size: int | None = None
    max_batch: int | None = None
    max_pending_per_user: int | None = None
    negative_prefix: str = ""
    banned_words: tuple[str, ...] = ()
    nsfw_words: tuple[str, ...] = ()
    nsfw_policy: str = "age-restricted"
    gallery_channel: str | None = None
    gallery_min_rank: float = 4.0
    gallery_min_ratings: int = 3
    gallery_stars: int = 3
    default_model: str | None = None
    default_sampler: str | None = None
    default_steps: int | None = None
    default_cfg_scale: float | None = None
    default_size: str | None = None
    default_upscaler: str | None = None  # the U buttons' hires upscaler (a model upscaler's name)

    def limits(self, base: Limits) -> Limits:
        """The machine's limits lowered by this community's."""
        changes: dict[str, Any] = {}
        if self.max_steps:
            changes["max_steps"] = min(base.max_steps, self.max_steps)
        if self.max_size:
            changes["max_width"] = min(base.max_width, self.max_size)
            changes["max_height"] = min(base.max_height, self.max_size)
        if self.max_batch:
            changes["max_batch_size"] = min(base.max_batch_size, self.max_batch)
            changes["max_batch_count"] = min(base.max_batch_count, self.max_batch)
        return base.model_copy(update=changes)

    def check_prompt(self, request: GenerationRequest, age_restricted: bool) -> bool:
        """Refuse banned words, and NSFW words outside age-restricted channels; True if the prompt is NSFW."""
        if (word := _first_word(self.banned_words, request.prompt)) is not None:
            raise InvalidRequest("prompt", f"{word!r} is not allowed in this server")
        nsfw = _first_word(self.nsfw_words, request.prompt) is not None  # not the negative prompt
        if nsfw and self.nsfw_policy == "age-restricted" and not age_restricted:
            raise InvalidRequest(
                "prompt", "this prompt is marked NSFW in this server; use it in an age-restricted channel"
            )
        return nsfw

    def apply(self, request: GenerationRequest, limits: Limits) -> GenerationRequest:
        """The request with the forced negative prefix and the batch limit applied."""
        if self.max_batch and request.batch_size * request.batch_count > self.max_batch:
            raise InvalidRequest(
                "batch_size",
                f"{request.batch_size} × {request.batch_count} images; this server allows at most "
                f"{self.max_batch} per command",
            )
        prefix = self.negative_prefix
        if prefix and not request.negative_prompt.startswith(prefix):
            negative = f"{prefix}, {request.negative_prompt}" if request.negative_prompt else prefix
            request = dataclasses.replace(request, negative_prompt=negative)
        return request


def _first_word(words: tuple[str, ...], text: str) -> str | None:
    folded = text.casefold()
    for word in words:
        if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", folded):
            return word
    return None
