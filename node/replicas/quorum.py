"""Writing to and reading from one partition's replica set, with handoff inside the policy.

A write goes to the R replicas in parallel. Each replica that fails is replaced by the next node of
the partition's handoff order (the same policy ring, so never outside the policy) on a site not used
yet. The write counts when copies are durable on at least `MIN_SITES` distinct sites; it tries for
all R. Fewer than that raises `QuorumNotReached` naming every failure: it never silently succeeds.

A read asks the R replicas, replacing failures by handoff nodes the same way, so a copy written
during a handoff is found again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from maillage.node.errors import AccessDenied, PeerUnavailable, QuorumNotReached
from maillage.node.replicas.replica import Replica
from maillage.node.replicas.transport import Peers
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import PartitionTable

MIN_SITES = 2

Operation = Callable[[Replica], Awaitable[Any]]


@dataclass(frozen=True)
class Outcome:
    """What each node answered: results by node id, errors by node id."""
    results: dict[str, Any]
    errors: dict[str, Exception]

    def describe_errors(self) -> str:
        return "; ".join(f"{node}: {err}" for node, err in self.errors.items()) or "none"


def effective_replicas(table: PartitionTable, partition: int, is_out: Callable[[str], bool],
                       site_of: Callable[[str], str]) -> tuple[str, ...]:
    """The partition's owners while some nodes are marked out: each out replica is replaced by
    the next handoff node on a site not used yet (the rule writes follow), so repair copies a
    dead node's partitions exactly where its hinted writes already went."""
    replicas = table.replicas(partition)
    if not any(is_out(n) for n in replicas):
        return replicas
    kept = [n for n in replicas if not is_out(n)]
    sites = {site_of(n) for n in kept}
    for h in table.handoffs(partition):
        if len(kept) == len(replicas):
            break
        if not is_out(h) and site_of(h) not in sites:
            kept.append(h)
            sites.add(site_of(h))
    return tuple(kept)


class RoutedAround(PeerUnavailable):
    """A replica (or record owner) not asked because this node suspects it is down: the callers that
    route around suspects (`ReplicaSets`, `Catalog.at_owners`) ask it after all when no other site
    can stand in."""


class ReplicaSets:
    def __init__(self, peers: Peers, layout: LayoutState, is_up: Callable[[str], bool] = lambda _: True,
                 maybe_behind: Callable[[str], bool] = lambda _: False) -> None:
        self._peers = peers
        self._layout = layout
        self._is_up = is_up
        self._maybe_behind = maybe_behind

    def site_of(self, node_id: str) -> str:
        return self._layout.current.node(node_id).site

    def settled(self, table: PartitionTable, partition: int) -> bool:
        """Every replica of the partition is believed up and none may still be behind after a
        silence: a read would not widen, the replicas alone hold the newest version."""
        return all(self._is_up(n) and not self._maybe_behind(n) for n in table.replicas(partition))

    async def _attempt(self, node_id: str, op: Operation, anyway: bool = False) -> tuple[str, Any, Exception | None]:
        if not anyway and not self._is_up(node_id):
            return node_id, None, RoutedAround(f"{node_id} is suspected down (silent); routed around")
        try:
            return node_id, await op(self._peers.replica(node_id)), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of one replica is routed around, and reported
            return node_id, None, exc

    async def run(self, table: PartitionTable, partition: int, op: Operation, *,
                  widen: bool = False) -> Outcome:
        """Run `op` on the partition's replicas, replacing each failure by a handoff node. With
        `widen` (reads), a replica that may still be behind after a silence is joined by the
        handoff node a write would have used in its place (the same choice as below)."""
        results: dict[str, Any] = {}
        failures: dict[str, Exception] = {}
        replicas = table.replicas(partition)
        used_sites = {self.site_of(n) for n in replicas}
        handoffs = list(table.handoffs(partition))
        pending = [(n, False) for n in replicas]
        if widen:
            for node_id in replicas:
                if self._maybe_behind(node_id):
                    extra = next((h for h in handoffs if self.site_of(h) not in used_sites), None)
                    if extra is not None:
                        handoffs.remove(extra)
                        used_sites.add(self.site_of(extra))
                        pending.append((extra, False))
        while pending:
            answers = await asyncio.gather(*(self._attempt(n, op, anyway) for n, anyway in pending))
            pending = []
            for node_id, result, exc in answers:
                if exc is None:
                    results[node_id] = result
                    failures.pop(node_id, None)
                    continue
                failures[node_id] = exc
                if isinstance(exc, AccessDenied):
                    # A refusal of this operation, not an absence: a stand-in holds nothing to
                    # check, and would take what the replica refused (a locked version's removal).
                    continue
                substitute = next((h for h in handoffs if self.site_of(h) not in used_sites), None)
                if substitute is not None:
                    handoffs.remove(substitute)
                    used_sites.add(self.site_of(substitute))
                    pending.append((substitute, False))
            if not pending and len({self.site_of(n) for n in results}) < len(replicas):
                # Short of a full set and no site left to stand in: a suspicion is a guess (a slow
                # node under load, lost probes), so ask the suspects after all rather than fail untried.
                pending = [(n, True) for n, e in failures.items() if isinstance(e, RoutedAround) and n not in results]
        return Outcome(results, failures)

    async def write(self, table: PartitionTable, partition: int, op: Operation, what: str) -> Outcome:
        outcome = await self.run(table, partition, op)
        sites = {self.site_of(n) for n in outcome.results}
        needed = min(MIN_SITES, table.policy.replicas)
        if len(sites) < needed:
            raise QuorumNotReached(
                f"{what}: only {len(sites)} site(s) acknowledged ({', '.join(sorted(sites)) or 'none'}), "
                f"{needed} distinct sites are required; failures: {outcome.describe_errors()}")
        return outcome

    async def read(self, table: PartitionTable, partition: int, op: Operation, what: str) -> Outcome:
        outcome = await self.run(table, partition, op, widen=True)
        if not outcome.results:
            raise QuorumNotReached(f"{what}: no replica answered; failures: {outcome.describe_errors()}")
        return outcome
