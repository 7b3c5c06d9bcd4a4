"""The enabled extensions, loaded before a command checks its options.

Extensions add samplers (`api.add_sampler`); the bot and the worker load them at start, so a command that
checks `--sampler` before its worker starts must load them first, or it refuses what the bot accepts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

Handler = TypeVar("Handler", bound=Callable[..., int])


def loads_extensions(handler: Handler) -> Handler:
    """Run `handler(args, settings)` after the enabled extensions have registered what they add."""

    @functools.wraps(handler)
    def run(args, settings) -> int:
        from extensions import discover

        discover(settings.extensions.disabled)  # a failing extension is logged and skipped, as in the bot
        return handler(args, settings)

    return run  # type: ignore[return-value]
