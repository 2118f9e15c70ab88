"""Virtual time: an asyncio loop whose clock jumps to the next timer when every task waits.

The loop never sleeps. Each time asyncio would block in `select()` for `timeout` seconds (nothing is
ready, the next timer is that far), `VirtualTimeLoop` checks the real selector without waiting and,
if nothing is there, moves its clock forward by `timeout` instead. Every timer the node code sets
(`asyncio.sleep`, `asyncio.timeout`, `wait_for`, the gossip and repair loops through
`VirtualClock.sleep`) then fires in order at its virtual time, so a simulated minute costs only the
CPU the handlers use. When nothing is ready and no timer is set the run is stuck: `Stalled`.

`VirtualClock` is the `Clock` the nodes read (through `SkewedClock`): its monotonic time is the
loop's, its wall time that plus a fixed offset, and its sleep is the loop's sleep.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

__all__ = ["Stalled", "VirtualTimeLoop", "VirtualClock", "InlineExecutor", "run_virtual"]

T = TypeVar("T")


class Stalled(RuntimeError):
    """Every task waits and no timer is set: nothing will ever happen again."""


class _InstantSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The real selector polled without waiting; a wait becomes a jump of the loop's clock."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise Stalled("every task waits and no timer is set")
        self.loop.jump(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time, starting at `start` seconds."""

    def __init__(self, start: float = 1000.0) -> None:
        selector = _InstantSelector()
        selector.loop = self
        self._now = start
        super().__init__(selector)

    def time(self) -> float:
        return self._now

    def jump(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


class VirtualClock:
    """The `maillage.node.runtime.clock.Clock` of a simulation: the running virtual loop's time."""

    def __init__(self, loop: VirtualTimeLoop, *, wall: float = 1_800_000_000.0) -> None:
        self._loop = loop
        self._wall_offset = wall - loop.time()
        self.monotonic = loop.time  # type: ignore[method-assign]  # hot: read by every detector call

    def monotonic(self) -> float:
        return self._loop.time()

    def time(self) -> float:
        return self._loop.time() + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class InlineExecutor(Executor):
    """Runs each job at once on the caller's thread: store calls finish in the order they are
    made, never in the order threads happen to be scheduled, so a run repeats exactly. A store
    call that could complete on another thread is made through it too (`runs_inline`)."""

    runs_inline = True

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            future.set_exception(exc)
        return future


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = 1000.0) -> T:
    """Run `main` to completion on a fresh `VirtualTimeLoop`, then close it."""
    loop = VirtualTimeLoop(start)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
