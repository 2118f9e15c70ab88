"""Which policy a bucket is bound to.

A bucket's record rests only on the nodes its policy allows (its name is data of the tenant too).
A node inside the policy finds it on its own disk; a node outside asks its peers and keeps the
answer in memory for a few seconds, never on disk.
"""

from __future__ import annotations

import asyncio

from maillage.node.errors import NodeError, NoSuchBucket
from maillage.node.replicas.transport import Peers
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.layout_state import LayoutState
from maillage.storage import BucketRecord

CACHE_SECONDS = 5.0


class Catalog:
    def __init__(self, peers: Peers, layout: LayoutState, clock: Clock = SYSTEM_CLOCK) -> None:
        self._peers = peers
        self._layout = layout
        self._clock = clock
        self._cache: dict[str, tuple[float, BucketRecord]] = {}

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)

    async def get(self, name: str) -> BucketRecord:
        record = await self.find(name)
        if record is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist")
        return record

    async def find(self, name: str) -> BucketRecord | None:
        record = await self._peers.local.get_bucket(name)
        if record is not None:
            return record
        cached = self._cache.get(name)
        if cached and self._clock.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        record = await self._ask_peers(name)
        if record is not None:
            self._cache[name] = (self._clock.monotonic(), record)
        return record

    async def _ask_peers(self, name: str) -> BucketRecord | None:
        others = [n.id for n in self._layout.current.nodes if n.id != self._peers.local.node_id]

        async def ask(node_id: str) -> BucketRecord | None:
            try:
                return await self._peers.replica(node_id).get_bucket(name)
            except NodeError:
                return None

        for answer in asyncio.as_completed([ask(n) for n in others]):
            record = await answer
            if record is not None:
                return record
        return None
