"""What a store's sync groups sum up to, kept while the store has not changed.

Every repair round compares a digest of each group a node owns with the group's other owners: the
node summarizes its own groups, and each co-owner asks for them too. Walking every holding and
every index entry of the store for that, round after round, made an idle node's cost grow with
what it stores, for nothing: at rest nothing changed since the last walk.

So a summary is kept with the store's *change mark*, read before the walk (the metadata store's
write sequence number and the chunk store's counters, which a quarantined or removed file moves),
and used again only while the mark is the same: anything written since makes the next ask walk
again. An entry older than `max_age` is walked again anyway, which catches what changed behind the
stores' backs (a chunk file deleted by hand). Entries are bounded: past `max_entries` distinct
groups (a peer may name any group) the cache starts afresh.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock

__all__ = ["SummaryCache", "MAX_AGE", "MAX_ENTRIES"]

MAX_AGE = 600.0      # seconds: a walk at least this often, changed or not
MAX_ENTRIES = 65536


class SummaryCache:
    def __init__(self, *, max_age: float = MAX_AGE, max_entries: int = MAX_ENTRIES,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._max_age = max_age
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[Hashable, tuple[Hashable, float, Any]] = {}
        self.walks = 0   # summaries computed (misses): what the cache saves shows here
        self.hits = 0

    def get(self, key: Hashable, mark: Hashable) -> Any | None:
        """The value kept for `key` under this very `mark`, if still young enough; else None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != mark or self._clock.monotonic() - entry[1] > self._max_age:
            return None
        self.hits += 1
        return entry[2]

    def put(self, key: Hashable, mark: Hashable, value: Any) -> None:
        """Keep `value`, computed from the store as it was at `mark` (read before the walk)."""
        self.walks += 1
        if key not in self._entries and len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key] = (mark, self._clock.monotonic(), value)
