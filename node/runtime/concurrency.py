"""Many awaitables, a bound on how many run at once: the one tool for the places that fan out
(multipart part reads and tombstones, S3 DeleteObjects, repair's bucket catalogs)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

__all__ = ["gather_bounded"]

T = TypeVar("T")


async def gather_bounded(calls: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Await every call, at most `limit` at a time; their results in order. The first exception
    propagates, as with `asyncio.gather`."""
    slots = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with slots:
            return await call()
    return list(await asyncio.gather(*(one(c) for c in calls)))
