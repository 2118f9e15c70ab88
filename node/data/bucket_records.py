"""Which policy a bucket is bound to, decided so that no node outside it can re-label it.

A bucket's record rests only on the nodes its policy allows (its name is data of the tenant too).
A node inside the policy finds it on its own disk. A node that holds no record of the name (outside
the policy, or down when the bucket was made) asks every peer and decides from their answers,
keeping the decision in memory for a few seconds, never on disk:

* a record counts only if nodes INSIDE its policy hold it, at `confirmation` distinct sites (two,
  or the policy's replicas if fewer): one hostile node claiming a name under a policy it is inside
  of (a German node saying "france-data is eu-wide") is not enough;
* two confirmed records of the name under different policies are a dispute (`BucketDisputed`): the
  bucket is refused until an operator settles it, never served under either;
* records of one policy and several generations (a node that missed a delete and re-create): the
  newest confirmed one.

Learning a pushed record is stricter (`check_undisputed`): a node takes a record of a name it does
not hold only if no peer inside another policy holds the name under that policy. So one German node
pushing an `eu-wide` record of a France-only bucket to the other German nodes is refused as long as
one French holder answers. What this does not stop (ARCHITECTURE.md, "Threat model"): with every
node of the true policy unreachable, nothing contradicts a forged record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from maillage.node.errors import BucketDisputed, NodeError, NoSuchBucket, QuorumNotReached
from maillage.node.replicas.transport import Peers
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import UnknownPolicy
from maillage.storage import BucketRecord

__all__ = ["CACHE_SECONDS", "Catalog"]

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
LOOKUP_TIMEOUT = 5.0   # seconds for every peer's answer to a lookup


class Catalog:
    def __init__(self, peers: Peers, layout: LayoutState, clock: Clock = SYSTEM_CLOCK,
                 is_up: Callable[[str], bool] = lambda _: True) -> None:
        self._peers = peers
        self._layout = layout
        self._clock = clock
        self._is_up = is_up  # peers the failure detector believes down are not waited for
        self._cache: dict[str, tuple[float, BucketRecord]] = {}
        peers.local.bucket_listeners.append(self.forget)

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
        record = self._decide(name, await self.answers(name))
        if record is not None:
            self._cache[name] = (self._clock.monotonic(), record)
        return record

    async def answers(self, name: str, exclude: Collection[str] = ()) -> dict[str, BucketRecord | None]:
        """Each peer's live record of `name` (None: it holds none), for the peers that answer (and
        are not believed down)."""
        me = self._peers.local.node_id
        others = [n.id for n in self._layout.current.nodes
                  if n.id != me and n.id not in exclude and self._is_up(n.id)]

        async def ask(node_id: str) -> BucketRecord | None:
            return await self._peers.replica(node_id).get_bucket(name)

        results = await asyncio.gather(*(asyncio.wait_for(ask(n), LOOKUP_TIMEOUT) for n in others),
                                       return_exceptions=True)
        out: dict[str, BucketRecord | None] = {}
        for node_id, result in zip(others, results):
            if isinstance(result, (NodeError, TimeoutError)):
                continue
            if isinstance(result, BaseException):
                raise result
            out[node_id] = result
        return out

    def _holder_inside(self, node_id: str, record: BucketRecord) -> str | None:
        """The site of `node_id` if the layout puts it inside `record`'s policy, else None."""
        layout = self._layout.current
        try:
            policy = layout.policy(record.policy)
        except UnknownPolicy:
            return None
        node = next((n for n in layout.nodes if n.id == node_id), None)
        if node is None or not policy.allows(layout.location_of(node_id)):
            return None
        return node.site

    def _decide(self, name: str, answers: dict[str, BucketRecord | None]) -> BucketRecord | None:
        sites: dict[BucketRecord, set[str]] = {}
        for node_id, record in answers.items():
            if record is None or record.name != name:
                continue
            site = self._holder_inside(node_id, record)
            if site is not None:
                sites.setdefault(record, set()).add(site)
        if not sites:
            return None
        layout = self._layout.current
        confirmed = [r for r, s in sites.items() if len(s) >= min(2, layout.policy(r.policy).replicas)]
        policies = {r.policy for r in confirmed}
        if len(policies) > 1:
            log.warning("bucket name held under several policies (%s): refused until settled",
                        ", ".join(sorted(policies)))
            raise BucketDisputed(f"bucket {name!r} is held under several policies ({', '.join(sorted(policies))}) "
                                 "by nodes inside each: it is refused until an operator settles which is true")
        if not confirmed:
            raise QuorumNotReached(f"bucket {name!r}: no record of it is confirmed by two sites inside its policy "
                                   "among the nodes that answered; try again when more of them are up")
        return max(confirmed, key=lambda r: r.created)

    async def check_undisputed(self, record: BucketRecord, *, pusher: str | None = None) -> None:
        """BucketDisputed if a peer inside another policy holds `record`'s name under that policy:
        a pushed record never re-labels a bucket its holders know under another policy."""
        answers = await self.answers(record.name, exclude=() if pusher is None else (pusher,))
        against = sorted(node_id for node_id, held in answers.items()
                         if held is not None and held.name == record.name and held.policy != record.policy
                         and self._holder_inside(node_id, held) is not None)
        if against:
            log.warning("a record of a bucket under policy %r was refused: %d node(s) hold the name under another "
                        "policy (pushed by %s)", record.policy, len(against), pusher or "this node")
            raise BucketDisputed(f"bucket {record.name!r}: node(s) {', '.join(against)} hold it under another "
                                 f"policy than {record.policy!r}; this record is refused")
