"""The replay cache: a request signature admitted once by this node is refused the second time.

A signature binds a request to its method, body and node (`maillage.proto.trust.requestauth`), but
whoever captured it (a compromised coordinator) could still send the same request to the same node
again while its timestamp is inside the window. The gate therefore remembers every signature it
admitted until its timestamp leaves the window; only verified signatures enter, so a caller without
a key cannot fill the cache.

Memory is bounded by a count of entries (`capacity`; ~200 bytes each, so the default, which fits
1,000 signed requests a second for a 60-second window, holds ~13 MB at most). Expired entries are
dropped first. When the cache is still full, the entry with the oldest timestamp is dropped and its
timestamp becomes the floor: every signature timed at or before the floor is refused from then on,
as it may have been seen and forgotten. That keeps the one promise that matters (a signature is
never admitted twice) without refusing every new request: only requests signed before the floor are
refused, and the floor rises only past `capacity` signed requests in a window, and then stays
seconds behind now. The alternatives were worse: forgetting entries re-opens replays, and refusing
everything while full lets one busy key holder stop all the others.

The cache lives in memory, so a restarted node has forgotten what it admitted: a signature captured
less than a window before a restart can be replayed once on that node after it (persisting the
cache would close that; not done). A floor at the node's start would close it too, but it compares
the clients' clocks with the node's: a node whose clock was 30 s ahead refused every client for its
first 30 s (the fault harness's clock-skew scenario caught it), so the floor starts empty.
"""

from __future__ import annotations

import datetime
import heapq
import math
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["CAPACITY", "ReplayCache", "Seen"]

CAPACITY = 65_536

Seen = Literal["new", "replayed", "too_old"]


class ReplayCache:
    """Signatures admitted within `window` of the clock `now` (seconds since the epoch); not
    thread-safe: the gate calls it from the event loop only."""

    def __init__(self, window: datetime.timedelta, *, capacity: int = CAPACITY,
                 now: Callable[[], float] = time.time) -> None:
        if capacity < 1:
            raise ValueError("capacity: at least one entry")
        self._window = window.total_seconds()
        self._capacity = capacity
        self._now = now
        self._seen: set[bytes] = set()
        self._by_time: list[tuple[float, bytes]] = []  # heap of (signed time, signature)
        # Signatures timed at or before this are refused (raised only by a full cache).
        self._floor = -math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, signature: bytes, when: datetime.datetime) -> Seen:
        """"new" (now remembered), "replayed" (seen before) or "too_old" (timed at or before the
        floor a full cache raised: it may have been seen and forgotten)."""
        signed_at = when.timestamp()
        horizon = self._now() - self._window
        self._expire(horizon)
        if signature in self._seen:
            return "replayed"
        if signed_at <= self._floor or signed_at < horizon:  # forgotten, or out of the window anyway
            return "too_old"
        while len(self._seen) >= self._capacity:
            oldest, dropped = heapq.heappop(self._by_time)
            self._seen.discard(dropped)
            self._floor = max(self._floor, oldest)
        if signed_at <= self._floor:
            return "too_old"
        self._seen.add(signature)
        heapq.heappush(self._by_time, (signed_at, signature))
        return "new"

    def _expire(self, horizon: float) -> None:
        """Drop the signatures timed before `horizon`: `admit` refuses those by their time."""
        while self._by_time and self._by_time[0][0] < horizon:
            _, signature = heapq.heappop(self._by_time)
            self._seen.discard(signature)
