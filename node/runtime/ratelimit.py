"""Rate limiting of the node's background copies and reads (repair, hand-back, scrub)."""

from __future__ import annotations

from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock

__all__ = ["TokenBucket"]


class TokenBucket:
    """At most `rate` bytes per second on average, bursts of one second; `rate` <= 0: no limit."""

    def __init__(self, rate: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._at = clock.monotonic()

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        while True:
            now = self._clock.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= min(n, self.rate):
                self._tokens -= n
                return
            await self._clock.sleep((min(n, self.rate) - self._tokens) / self.rate)
