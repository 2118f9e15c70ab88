"""Chunk GC: remove chunks held past the grace that no live manifest references any more.

It runs in its own loop, every `--gc-interval`, not inside repair rounds: a pass asks every node
eligible for a policy for all the chunks its manifests reference, which is far more work than a
repair round that finds nothing to copy. (Expired tombstones are dropped by repair, group by group,
since that needs the owners' listings repair compares anyway.)

A pass is deferrable work (`maillage.node.energy`): it waits for a turn before it starts, and stops
between two policies on a shed order; a pass is due within a day of the last one whatever the energy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from maillage.node.energy.decide import Kind
from maillage.node.energy.scheduler import EnergyScheduler, Job
from maillage.node.errors import NodeError
from maillage.node.replicas.transport import Peers
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import Layout, Node

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 600.0


@dataclass
class GcStats:
    passes_completed: int = 0
    chunks_removed: int = 0


class ChunkCollector(BackgroundLoop):
    task_name = "chunk-gc"

    def __init__(self, node_id: str, peers: Peers, layout: LayoutState, *, is_up: Callable[[str], bool],
                 grace: float, interval: float, clock: Clock = SYSTEM_CLOCK, job: Job | None = None) -> None:
        self.node_id = node_id
        self._peers = peers
        self._layout = layout
        self._is_up = is_up
        self._grace = grace
        self._interval = interval
        self._clock = clock
        self._job = job or EnergyScheduler(None, clock=clock).job(Kind.GC)
        self.stats = GcStats()

    async def _loop(self) -> None:
        await self._clock.sleep(min(self._interval, 1.0))  # let gossip hear from peers first
        while True:
            self._job.open()
            await self._job.turn()  # waits while deferred
            try:
                await self.collect()
            except NodeError as err:
                log.info("chunk GC: %s", err)
            except Exception:  # a pass must never kill the loop; the next one retries
                log.exception("chunk GC pass failed")
            await self._clock.sleep(self._interval)

    async def collect(self) -> None:
        """Remove chunks held here past the grace that no live manifest references.

        The references come from every node eligible for the policy (index owners and any node
        holding a hinted manifest: handoff never leaves the policy), or for a policy naming it cold
        (whose manifests name the chunks a lifecycle transition moved), and all must answer: one
        silent node could hold the only manifest of an object. An upload that reuses a chunk
        refreshes its holding time (HasChunks, PutChunk), so a chunk an upload counts on is
        always younger than the grace."""
        layout = self._layout.current
        local = self._peers.local
        cutoff = int((self._clock.time() - self._grace) * 1000)
        for policy in layout.policies:
            if not self._job.allowed():  # a shed order (or a grey window) between two policies
                log.info("chunk GC pass paused by the site's energy state; the next pass goes on")
                return
            candidates = await local.old_holdings(policy.name, cutoff)
            if not candidates:
                continue
            referenced: set[bytes] = set()
            try:
                for node in _reference_holders(layout, policy.name):
                    if not self._is_up(node.id):
                        raise NodeError(f"{node.id} is not up")
                    referenced.update(await self._peers.replica(node.id).referenced_chunks(policy.name))
            except NodeError as err:
                log.info("chunk GC of %s postponed: %s", policy.name, err)
                continue
            garbage = [d for d in candidates if d not in referenced]
            if garbage:
                await local.drop_chunks(policy.name, garbage)
                self.stats.chunks_removed += len(garbage)
                log.info("chunk GC: removed %d unreferenced chunk(s) of %s", len(garbage), policy.name)
        self.stats.passes_completed += 1
        self._job.close()


def _reference_holders(layout: Layout, policy: str) -> list[Node]:
    """The nodes whose manifests may name chunks resting under `policy`: those inside it, and those
    inside a policy that names it cold (`Layout.resting_under`)."""
    policies = layout.resting_under(policy)
    return [n for n in layout.nodes if any(p.allows(layout.location_of(n.id)) for p in policies)]
