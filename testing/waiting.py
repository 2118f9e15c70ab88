"""Waiting in tests: on a condition, with a bound, never on a fixed sleep.

A sleep long enough on a quiet laptop is too short on a loaded CI machine, and one long enough for
CI wastes everyone's time elsewhere. `eventually` polls a condition with a short back-off until it
holds or the bound is reached, and then fails saying what was awaited and what it last saw.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually", "eventually_async"]

T = TypeVar("T")


def _failure(what: str, timeout: float, last: object, error: BaseException | None) -> AssertionError:
    seen = f"last error: {type(error).__name__}: {error}" if error is not None else f"last value: {last!r}"
    return AssertionError(f"{what} not reached within {timeout:g} s ({seen})")


def eventually(predicate: Callable[[], T], *, timeout: float = 30.0, what: str = "condition",
               interval: float = 0.05, max_interval: float = 0.5, retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """The first truthy value of `predicate()`, polled until `timeout` seconds have passed.
    Exceptions of the `retry_on` types count as "not yet"; any other propagates at once."""
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            last, error = predicate(), None
            if last:
                return last  # type: ignore[return-value]
        except retry_on as exc:
            error = exc
        if time.monotonic() >= deadline:
            raise _failure(what, timeout, last, error)
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)


async def eventually_async(predicate: Callable[[], Awaitable[T] | T], *, timeout: float = 30.0,
                           what: str = "condition", interval: float = 0.05, max_interval: float = 0.5,
                           retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """`eventually` inside a running event loop, which keeps running while it waits: the predicate
    may be async (awaited) or a plain function of the loop's state (a task's progress)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = predicate()
            last, error = (await value if inspect.isawaitable(value) else value), None
            if last:
                return last  # type: ignore[return-value]
        except retry_on as exc:
            error = exc
        if loop.time() >= deadline:
            raise _failure(what, timeout, last, error)
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, max_interval)
