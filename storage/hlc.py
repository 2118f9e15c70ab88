"""Hybrid logical clock: object versions that always move forward.

Last-writer-wins needs a version that is larger than every version the writer could have seen,
even when wall clocks disagree. Plain wall time fails that: a node whose clock runs 30 s late
writes "older" versions than the one it is replacing, and its newer write silently loses.

A version is a 64-bit integer ``(physical_ms << 16) | logical``. ``now()`` returns
``max(wall_ms << 16, last + 1)``: it follows the wall clock while the wall clock moves forward,
and otherwise counts up in the low 16 bits (a 65,536th tick carries into the millisecond field, so
it can never wrap or repeat). ``observe(remote)`` merges a version seen from another node, so the
next local version exceeds it. The physical part stays within a few ms of real time under normal
operation, so a version can still be shown as a date (:func:`version_time`).

The clock is thread-safe and its wall source is injectable so tests can drive it backwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["HybridClock", "version_time", "LOGICAL_BITS"]

LOGICAL_BITS = 16
_MAX = (1 << 64) - 1


class HybridClock:
    """A thread-safe hybrid logical clock producing strictly increasing 64-bit versions."""

    __module__ = "maillage.storage"

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._last = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        """A new version, strictly greater than every version returned or observed before."""
        physical = int(self._wall() * 1000) << LOGICAL_BITS
        with self._lock:
            v = max(physical, self._last + 1)
            if v > _MAX:
                raise OverflowError("hybrid clock exhausted its 64-bit range")
            self._last = v
            return v

    def observe(self, remote: int) -> None:
        """Merge a version seen elsewhere so that later ``now()`` values exceed it."""
        if not 0 <= remote <= _MAX:
            raise ValueError(f"version {remote} is not a 64-bit unsigned integer")
        with self._lock:
            if remote > self._last:
                self._last = remote

    @property
    def last(self) -> int:
        """The largest version issued or observed so far."""
        with self._lock:
            return self._last


def version_time(version: int) -> float:
    """Seconds since the epoch encoded in ``version`` (for display)."""
    return (version >> LOGICAL_BITS) / 1000.0
