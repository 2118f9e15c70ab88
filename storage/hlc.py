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

A version from elsewhere is taken only if it lies at most ``max_drift`` seconds (default 5 minutes)
ahead of this node's wall clock; a further one is refused with :class:`VersionTooFarAhead`
(:func:`check_version`, also used where a node receives versions without merging them). One
forged version (say ``2**64 - 1``) would otherwise drag every later version to the end of the
64-bit range. The clock therefore never leaves the range: it stays within the drift of real time,
and would refuse (never wrap) if it reached the end.

The clock is thread-safe and its wall source is injectable so tests can drive it backwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from maillage.storage.errors import VersionTooFarAhead

__all__ = ["HybridClock", "version_time", "check_version", "LOGICAL_BITS", "DEFAULT_MAX_DRIFT", "MAX_VERSION"]

LOGICAL_BITS = 16
MAX_VERSION = (1 << 64) - 1
_MAX = MAX_VERSION
#: How far (seconds) a version seen from elsewhere may lie ahead of this node's clock.
DEFAULT_MAX_DRIFT = 300.0


def _limit(wall: float, max_drift: float) -> int:
    """The largest version acceptable when the wall clock reads `wall` (seconds)."""
    return min(_MAX, ((int((wall + max_drift) * 1000) + 1) << LOGICAL_BITS) - 1)


def check_version(version: int, wall: float, max_drift: float = DEFAULT_MAX_DRIFT) -> None:
    """Refuse `version` (VersionTooFarAhead) if it is not a 64-bit version at most `max_drift`
    seconds ahead of the wall clock reading `wall` (seconds since the epoch)."""
    if not 0 <= version <= _MAX:
        raise VersionTooFarAhead(f"version {version} is not a 64-bit unsigned integer")
    if version > _limit(wall, max_drift):
        ahead = version_time(version) - wall
        raise VersionTooFarAhead(
            f"version {version} is {ahead:.0f} s ahead of this node's clock, more than the "
            f"{max_drift:g} s allowed (--max-clock-drift): refused; check the writer's clock")


class HybridClock:
    """A thread-safe hybrid logical clock producing strictly increasing 64-bit versions."""

    __module__ = "maillage.storage"

    def __init__(self, wall: Callable[[], float] = time.time, *, max_drift: float = DEFAULT_MAX_DRIFT) -> None:
        if max_drift < 0:
            raise ValueError(f"max_drift must be >= 0 seconds, got {max_drift}")
        self._wall = wall
        self.max_drift = max_drift
        self._last = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        """A new version, strictly greater than every version returned or observed before."""
        physical = int(self._wall() * 1000) << LOGICAL_BITS
        with self._lock:
            v = max(physical, self._last + 1)
            if v > _MAX:  # unreachable while observe() keeps the clock within the drift
                raise VersionTooFarAhead("the hybrid clock reached the end of its 64-bit range")
            self._last = v
            return v

    def check(self, remote: int) -> None:
        """Refuse (VersionTooFarAhead) a version further ahead of this clock than `max_drift`."""
        check_version(remote, self._wall(), self.max_drift)

    def observe(self, remote: int) -> None:
        """Merge a version seen elsewhere so that later ``now()`` values exceed it; a version too
        far ahead of the wall clock is refused (VersionTooFarAhead) and changes nothing."""
        self.check(remote)
        with self._lock:
            if remote > self._last:
                self._last = remote

    def wall_ms(self) -> int:
        """This node's wall clock in milliseconds (not the hybrid time: a deadline such as an object
        lock's retention is a date, not an order)."""
        return int(self._wall() * 1000)

    @property
    def last(self) -> int:
        """The largest version issued or observed so far."""
        with self._lock:
            return self._last


def version_time(version: int) -> float:
    """Seconds since the epoch encoded in ``version`` (for display)."""
    return (version >> LOGICAL_BITS) / 1000.0
