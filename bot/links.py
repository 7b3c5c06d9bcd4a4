"""Results being linked to their Discord message: a reaction that comes before the link waits for it.

The delivery takes a `linking()` while it shows a result and links its images to the message; the reactions
handler asks `mark()` and `settled()` when a message is not in the catalog yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator


class ResultLinks:
    """Results being shown, per channel, whose images are not linked to their message yet.

    A reaction on a message the catalog does not know may be on one of them: its handler takes a `mark()`
    before looking the message up and, if the lookup finds nothing, `settled()` says whether to look again
    once the results being shown are linked.
    """

    def __init__(self) -> None:
        self._busy: dict[int, int] = defaultdict(int)  # channel → results being shown and linked
        self._changes: dict[int, int] = defaultdict(int)  # channel → starts and ends of those
        self._idle = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def linking(self, channel_id: int) -> AsyncIterator[None]:
        """While a result is shown in the channel and its images linked to the message."""
        self._busy[channel_id] += 1
        self._changes[channel_id] += 1
        try:
            yield
        finally:
            self._busy[channel_id] -= 1
            self._changes[channel_id] += 1
            async with self._idle:
                self._idle.notify_all()

    def mark(self, channel_id: int) -> int:
        return self._changes[channel_id]

    async def settled(self, channel_id: int, mark: int, timeout_s: float) -> bool:
        """Whether a result was being linked in the channel since `mark`; if so, after waiting (up to
        `timeout_s`) until none is."""
        if self._changes[channel_id] == mark and not self._busy[channel_id]:
            return False
        async with self._idle:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait_for(lambda: not self._busy[channel_id]), timeout_s)
        return True
