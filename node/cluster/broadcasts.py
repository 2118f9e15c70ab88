"""The bounded buffer of suspicions a node piggybacks on its probes and acks (SWIM's dissemination).

Why bounded this way: a message carries at most `count` items, least-sent and newest first, and
each item is sent `limit` times (the caller passes about lambda x log N), so news reaches most
nodes in O(log N) periods while a message never grows with N; a suspicion the node still holds
keeps riding after that, behind fresher news, so the few nodes the epidemic missed learn it too
(a message still carries at most `count`). One item per node (a newer
suspicion replaces an older one), and the caller only adds nodes of the layout, so the buffer
holds at most one item per layout node.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from maillage.node.replicas.transport import Suspicion

__all__ = ["Broadcasts"]


class Broadcasts:
    def __init__(self) -> None:
        self._items: dict[str, list] = {}   # node id -> [Suspicion, times sent, sequence]
        self._seq = itertools.count()

    def add(self, item: Suspicion) -> None:
        self._items[item.node_id] = [item, 0, next(self._seq)]

    def drop(self, node_id: str, *, up_to: int) -> None:
        """Forget the suspicion of `node_id` if it is about incarnation `up_to` or older (refuted)."""
        entry = self._items.get(node_id)
        if entry is not None and entry[0].incarnation <= up_to:
            del self._items[node_id]

    def retain(self, node_ids: frozenset[str]) -> None:
        for gone in self._items.keys() - node_ids:
            del self._items[gone]

    def take(self, count: int, limit: int, keep: Callable[[str], bool] = lambda node_id: False,
             ) -> tuple[Suspicion, ...]:
        """Up to `count` items for one message; each is dropped once sent `limit` times, unless
        `keep(node_id)` (still true: it goes on riding, after fresher news, to reach the last
        nodes an epidemic misses)."""
        if not self._items:
            return ()
        chosen = heapq.nsmallest(count, self._items.values(), key=lambda e: (e[1], -e[2]))
        for entry in chosen:
            entry[1] += 1
            if entry[1] >= limit and not keep(entry[0].node_id):
                del self._items[entry[0].node_id]
        return tuple(entry[0] for entry in chosen)

    def __len__(self) -> int:
        return len(self._items)
