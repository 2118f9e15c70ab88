"""Time for the node's background work, behind one small protocol so tests can step it.

`Clock` gives the two times the node reads: `monotonic()` (seconds, for intervals: failure
detection, rate limits, caches, progress) and `time()` (unix seconds, for anything compared with
HLC versions or stored on disk: tombstone and chunk-holding ages), and `sleep()` for waiting on the
first. `SystemClock` is the real one. `ManualClock` only moves when a test calls `advance()`: its
sleepers wake when the time they wait for is reached, so a test drives a rate limit or a failure
detector through minutes in microseconds, without a real sleep.

The random source (gossip targets, the peers repair asks for bucket records) is injected next to
the clock as a plain `random.Random`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time as _time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "ManualClock", "SYSTEM_CLOCK"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals only)."""
        ...

    def time(self) -> float:
        """Unix seconds (the wall clock)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until `monotonic()` has moved `seconds` forward."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return _time.monotonic()

    def time(self) -> float:
        return _time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only on `advance()`; wall and monotonic time move together."""

    def __init__(self, *, monotonic: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self._mono = monotonic
        self._wall_offset = wall - monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._mono + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (for tests that advance only once something sleeps)."""
        return sum(1 for *_, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        """Move both clocks forward and wake every sleep whose time has come."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._mono += seconds
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
