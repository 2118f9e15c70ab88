"""The node-wide memory budget for upload bytes in flight.

Every PutObject message and PutChunk frame a node has received but not yet consumed holds memory.
Without a bound, a few callers that each send one large message and then hang take the node to
gigabytes. The budget counts those bytes: a message holds its size until the coordinator asks for
the next one (its bytes are then in chunks, which the coordinator bounds itself) or the call ends.

When the budget is spent, a new message waits (backpressure: the handler reads nothing more from
that stream, so HTTP/2 flow control stops its sender); past `wait` seconds the call fails with
`Overloaded` (RESOURCE_EXHAUSTED, reason `Overloaded`) and frees what it held. Waiters are served
in arrival order; a message larger than the whole budget waits for all of it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from maillage.node.errors import NodeError

__all__ = ["DEFAULT_UPLOAD_BUDGET", "DEFAULT_UPLOAD_WAIT", "Lease", "Overloaded", "UploadBudget"]

DEFAULT_UPLOAD_BUDGET = 256 * 1024 * 1024
DEFAULT_UPLOAD_WAIT = 10.0


class Overloaded(NodeError):
    """The node's budget for upload bytes in flight stayed spent too long: retry later."""


class UploadBudget:
    """Bytes of uploads in flight on this node, at most `limit`; waits at most `wait` seconds."""

    def __init__(self, limit: int = DEFAULT_UPLOAD_BUDGET, *, wait: float = DEFAULT_UPLOAD_WAIT) -> None:
        if limit <= 0 or wait < 0:
            raise ValueError(f"need a positive budget and a wait >= 0, got {limit} bytes and {wait} s")
        self.limit = limit
        self.wait = wait
        self.used = 0
        self.refused = 0  # uploads refused Overloaded since start (a metric)
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, size: int) -> int:
        """Hold `size` bytes (capped at the whole budget); returns what is held (pass it to
        `release`). Raises `Overloaded` after waiting `wait` seconds."""
        n = max(0, min(size, self.limit))
        if not self._waiters and self.used + n <= self.limit:
            self.used += n
            return n
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(self.wait):
                await asyncio.shield(fut)
        except BaseException as exc:
            if fut.done() and not fut.cancelled():  # granted just as the wait ended
                self.release(n)
            else:
                fut.cancel()
                self._waiters.remove(entry)
                self._wake()
            if isinstance(exc, TimeoutError):
                self.refused += 1
                raise Overloaded(
                    f"node is overloaded: {self.used} of its {self.limit} bytes for uploads in flight "
                    f"stayed in use for {self.wait:g} s; retry later") from None
            raise
        return n

    @property
    def waiting(self) -> int:
        """How many acquires are waiting for bytes (for tests that act once something waits)."""
        return sum(1 for _, fut in self._waiters if not fut.done())

    def release(self, n: int) -> None:
        self.used -= n
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self.used + n > self.limit:
                return
            self._waiters.popleft()
            self.used += n
            fut.set_result(None)

    def lease(self) -> Lease:
        return Lease(self)


class Lease:
    """What one call holds: `hold(n)` gives back what it held and takes `n`; `close()` gives all back."""

    def __init__(self, budget: UploadBudget) -> None:
        self._budget = budget
        self._held = 0

    async def hold(self, size: int) -> None:
        self.close()
        self._held = await self._budget.acquire(size)

    def close(self) -> None:
        held, self._held = self._held, 0
        if held:
            self._budget.release(held)
