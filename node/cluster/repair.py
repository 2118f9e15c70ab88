"""Anti-entropy: repair after a loss, rebalance after a layout change, hand-back after a handoff.

One mechanism for all three. Everything a node stores belongs to a *group* (`SyncGroup`): the
chunks one policy places in one partition, or one bucket's index. Each group has *owners*: the
partition table's replicas, with marked-out nodes replaced by their handoffs (`effective_replicas`).
Every round, each node:

- **as an owner**, compares a digest of each group's sorted listing with every other owner (one
  batched `SyncSummaries` call per peer) and, where they differ, fetches the peer's listing and
  pulls only what it lacks or has older. Pull-only keeps it simple: every owner runs the same
  round, so differences close from both sides. A wiped node pulls from every node sharing one of
  its partitions, so many sources serve it in parallel.
- **as a non-owner holding data** (a hinted handoff, or a partition the layout moved away),
  pushes what each owner lacks, and drops its own copy only once every owner is up and has
  confirmed it: a byte is never removed before it is durable where it belongs.

Copies go through a token bucket (`rate` bytes/s, `ratelimit.py`) so repair never starves client
traffic. Expired tombstones are dropped once every owner, and every former owner of the partition
that may still hand something back, holds the same one or none (see `_expire`); chunks no live
manifest references any more are removed by the chunk GC (`gc.py`), in a loop of its own. The
rules deciding what moves are pure functions in `antientropy.py`.

Energy (`maillage.node.energy`): an owner pulling what it lacks restores a copy its partition is
short of, which is urgent and never waits. Hand-back (pushing to owners, then dropping the copy held
here) is deferrable where the data is at R already, counting this copy; an item fewer than R nodes
hold (this one and the owners that answered with it) is pushed at once whatever the energy
(`short_of_copies`), and a copy no owner lacks any more is dropped at once. Deferred hand-back
and tombstone expiry are skipped by a round while the site's energy state defers them (a shed
order, a grey window with slack; for a rebalance pull or a hand-back push, the other site's state
counts too, as grey: `decide.shared`), and a push stops between two chunks; a later round, or the
one the scheduler triggers when green or unknown returns, goes on. A
round never waits for energy, so urgent work is never held up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from maillage.node.data.bucket_records import Catalog, majority
from maillage.node.energy.decide import Kind
from maillage.node.energy.scheduler import EnergyScheduler, Job
from maillage.node.errors import NodeError, NoSuchBucket
from maillage.node.object_lock import ObjectLocked
from maillage.node.replicas.antientropy import (
    IndexEntry,
    Plan,
    Progress,
    SyncGroup,
    chunks_missing,
    droppable_tombstones,
    entries_to_pull,
    entries_to_push,
    short_of_copies,
    stale_hints,
)
from maillage.node.replicas.quorum import effective_replicas
from maillage.node.replicas.replica import Replica, put_manifest_teaching
from maillage.node.replicas.transport import Peers
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.runtime.concurrency import gather_bounded
from maillage.node.runtime.ratelimit import TokenBucket
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import (
    Layout,
    PartitionTable,
    PolicyUnsatisfiable,
    UnknownPolicy,
    bucket_partition,
)
from maillage.proto.frame import CorruptFrame as FrameError
from maillage.proto.frame import read_frame_header
from maillage.storage import (
    BucketRecord,
    BucketTombstone,
    ChunkNotFound,
    Manifest,
    StorageError,
    version_time,
)

log = logging.getLogger(__name__)

GROUP_CONCURRENCY = 8
# Groups pulled from one peer at once (each a SyncListing, then its chunk copies). A wiped node
# differs from a peer in every group they share: unbounded, its first round opened hundreds of
# streams on a fresh connection, and the peer refused those past its stream limit (REFUSED_STREAM
# before its settings arrived), leaving those groups for later rounds.
PULLS_PER_PEER = 16
MANIFEST_OVERHEAD = 256  # bytes charged to the rate limit per manifest besides inline data
TRIGGER_GAP = 5.0  # seconds from a round's start before a triggered one (at most the interval)
TRANSFERS = 8  # chunk copies in flight per node, from all sources together
BUCKET_SOURCES = 3  # peers asked each round for bucket records


class Repairer(BackgroundLoop):
    task_name = "repair"

    def __init__(self, node_id: str, peers: Peers, layout: LayoutState, *,
                 is_up: Callable[[str], bool], is_out: Callable[[str], bool],
                 interval: float, rate: float, tombstone_grace: float,
                 clock: Clock = SYSTEM_CLOCK, rng: random.Random | None = None,
                 energy: EnergyScheduler | None = None, peer_energy: Callable[[str], str] = lambda _: "") -> None:
        """`peer_energy`: the energy state a peer last told of its site (a transfer with it runs in
        a window that suits both, `decide.shared`)."""
        self.node_id = node_id
        self._peers = peers
        self._peer_energy = peer_energy
        self._layout = layout
        self._is_up = is_up
        self._is_out = is_out
        self._interval = interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._limiter = TokenBucket(rate, clock)
        self._tombstone_grace = tombstone_grace
        # Tombstone expiry walks each owned index. Once a walk found no expired tombstone, the next
        # one waits a tenth of the grace (a tombstone lives the grace anyway): an idle node is spared
        # a walk of its indexes every round. Expired tombstones not all dropped yet (an owner lags
        # or is down) are looked at again every round, as before.
        self._expire_every = max(interval, tombstone_grace / 10)
        self._next_expiry = float("-inf")
        self._expiry_pending = False
        self.progress = Progress()
        self._wake = asyncio.Event()
        self._recovery_check: asyncio.Future[None] | None = None  # peer_recovered's look at the store
        self._fetching: set[tuple[str, bytes]] = set()  # chunks already being copied this round
        self._owners_key: tuple[int, tuple[str, ...]] | None = None  # what `_owners` was worked out for
        self._owners: dict[str, tuple[tuple[str, ...], ...]] = {}
        self._mine: dict[str, tuple[int, ...]] = {}
        self._moved: dict[str, dict[int, tuple[str, ...]]] = {}  # policy -> partition -> owners before
        self._left: dict[str, dict[int, tuple[str, ...]]] = {}  # policy -> partition it took away -> owners before
        # (policy, partition) -> nodes that owned it before an ownership change and own it no more
        # (a layout change, or a marked-out owner back: its stand-in): they may hold index entries
        # of it to hand back, which tombstone expiry waits for (`_expire`). Kept in memory.
        self._former: dict[tuple[str, int], set[str]] = {}
        self._former_empty: set[tuple[SyncGroup, str]] = set()  # answered holding nothing, since the last change
        self._moves_seen = False  # a rebalance pull was due this round
        self.residency_violations = 0  # chunk partitions held here of policies this node is outside of
        self._transfers = asyncio.Semaphore(TRANSFERS)
        self._catalog = Catalog(peers, layout, clock, is_up=is_up)  # where bucket records rest
        self._listed: set[tuple[str, str]] = set()  # records entered in their tenant's list by this run
        energy = energy or EnergyScheduler(None, clock=clock)
        self._urgent = energy.job(Kind.URGENT_REPAIR, rate=rate)
        self._handback = energy.job(Kind.HAND_BACK, rate=rate)
        self._rebalance = energy.job(Kind.REBALANCE, rate=rate)
        self._gc = energy.job(Kind.GC)
        for older in reversed(layout.history()):  # who owned what before, as far as this node knows
            before, self._owners = self._owners, self._plain_ownership(older, layout)
            if before:
                self._note_former_owners(before)
        self._ownership(self._tables())

    # ----- life cycle ------------------------------------------------------------------------

    def trigger(self) -> None:
        """Start the next round now instead of after the interval."""
        self._wake.set()

    def peer_recovered(self, node_id: str) -> None:
        """A peer suspected here answered again: start a round now if this node holds anything for
        others (writes taken while the peer was suspected, to hand back), not otherwise. While a
        mesh starts, every peer's first answer is such a recovery, and a full round for each (the
        co-owners' summaries and bucket catalogs, most over a new TLS connection) cost the nodes of
        a 100-node local mesh a round every `TRIGGER_GAP` for their first minute."""
        if self._recovery_check is None or self._recovery_check.done():
            self._recovery_check = asyncio.ensure_future(self._trigger_if_holding(node_id))

    async def _holds_for_others(self) -> bool:
        """Whether a hand-back (`_hand_back`) would send anything: an item held here in a group this
        node does not own, or a bucket record held here by a node that is not one of the name's
        record owners (a handoff's copy). A record owner that is not one of the bucket's index
        owners holds an empty group of it, and sends nothing."""
        local = self._peers.local
        for group in (await self._local_plan()).foreign:
            if group.is_index and not self._catalog.is_owner(group.bucket, group.policy):
                return True
            if await local.sync_listing(group):
                return True
        return False

    async def _trigger_if_holding(self, node_id: str) -> None:
        try:
            holding = await self._holds_for_others()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # cannot tell: hand back, as before this check existed
            log.info("repair: what is held for %s could not be read (%s); starting a round", node_id, err)
            holding = True
        if holding:
            self.trigger()

    async def stop(self) -> None:
        check, self._recovery_check = self._recovery_check, None
        if check is not None:
            check.cancel()
            await asyncio.gather(check, return_exceptions=True)
        await super().stop()

    async def _loop(self) -> None:
        await self._clock.sleep(min(self._interval, 1.0))  # let gossip hear from peers first
        while True:
            try:
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a round must never kill the loop; the next one retries
                log.exception("repair round failed")
            finally:
                self.progress.running = False
            await self._pause()
            self._wake.clear()

    async def _pause(self) -> None:
        """Until the interval has passed or `trigger()` was called, whichever comes first; a
        triggered round still waits `TRIGGER_GAP` after the last one began (at most the interval).
        Every peer seen up again triggers a round while this node holds something for others
        (`peer_recovered`): when a site comes back that is a trigger a second on every node holding
        its writes, and rounds back to back made the first nodes of a 100-node local mesh spend
        45 ms/s and starve the rest."""
        began = self.progress.round_started
        wake = asyncio.ensure_future(self._wake.wait())
        nap = asyncio.ensure_future(self._clock.sleep(self._interval))
        try:
            await asyncio.wait((wake, nap), return_when=asyncio.FIRST_COMPLETED)
            if wake.done() and not nap.done():
                gap = min(TRIGGER_GAP, self._interval) - (self._clock.monotonic() - began)
                if gap > 0:
                    rest = asyncio.ensure_future(self._clock.sleep(gap))
                    try:
                        await asyncio.wait((nap, rest), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        rest.cancel()
        finally:
            for f in (wake, nap):
                f.cancel()

    # ----- one round -------------------------------------------------------------------------

    def _site_of(self, node_id: str) -> str:
        return self._layout.current.node(node_id).site

    async def _catalogs(self, peers: Sequence[str]) -> list[tuple[list[BucketRecord], list[BucketTombstone]]]:
        """The bucket records and tombstones of each of `peers` that answers (GROUP_CONCURRENCY at once),
        each kept only if that peer is inside its policy: a node has no authority over the records of
        a policy it is outside of, so a German node's tombstone of a France-only bucket is ignored."""
        layout = self._layout.current

        def inside(peer: str, policy: str) -> bool:
            return any(p.name == policy for p in layout.policies) and \
                layout.policy(policy).allows(layout.location_of(peer))

        async def one(peer: str) -> tuple[list[BucketRecord], list[BucketTombstone]] | None:
            try:
                records, tombstones = await self._peers.replica(peer).bucket_catalog()
            except NodeError:
                return None
            return ([r for r in records if inside(peer, r.policy)], [t for t in tombstones if inside(peer, t.policy)])
        return [a for a in await gather_bounded([partial(one, p) for p in peers], GROUP_CONCURRENCY) if a is not None]

    async def _learn_buckets(self) -> list[BucketRecord]:
        """Bucket tombstones and records that a few sampled peers offer and this node should hold
        (`Catalog.record_owners`: the name's owners, inside its policy). A wiped or new owner
        learns here which records and indexes it holds; an owner that missed a delete learns the
        tombstone, which drops its stale record and that generation's index; an owner holding a
        claim that lost a race (or a generation deleted and created again while it was down)
        drops it for the record its fellow owners decide. Tombstones first: a record of a
        deleted generation is never learned, whoever still offers it; and a record is learned
        only when the name's other owners decide on that very record (confirmed by two sites
        inside its policy, no dispute), never on one peer's word."""
        layout = self._layout.current
        me = layout.location_of(self.node_id)
        policies = {p.name for p in layout.policies}
        local = self._peers.local
        records, tombstones = await local.bucket_catalog()
        held = {r.name: r for r in records}
        dead = {(t.name, t.generation) for t in tombstones}
        peers = [n.id for n in layout.nodes if n.id != self.node_id and self._is_up(n.id)]
        sampled = self._rng.sample(peers, min(BUCKET_SOURCES, len(peers)))
        answers = await self._catalogs(sampled)

        def ours(policy: str) -> bool:
            return policy in policies and layout.policy(policy).allows(me)

        for _, offered_tombs in answers:
            for tomb in offered_tombs:
                mine = held.get(tomb.name)
                if (tomb.name, tomb.generation) in dead or not ours(tomb.policy):
                    continue
                if not (self._catalog.is_owner(tomb.name, tomb.policy)
                        or (mine is not None and mine.generation == tomb.generation)):
                    continue  # tombstones rest on the name's owners (and wipe a stale copy)
                try:
                    await local.delete_bucket(tomb)
                except NodeError:
                    continue
                dead.add((tomb.name, tomb.generation))
                if mine is not None and mine.generation == tomb.generation:
                    del held[tomb.name]
                    log.info("repair: bucket %r generation %s was deleted; dropped its record and index",
                             tomb.name, tomb.generation)
        candidates: dict[tuple[str, str], BucketRecord] = {}
        for offered_records, _ in answers:
            for record in offered_records:
                mine = held.get(record.name)
                if (record.name, record.generation) in dead or not ours(record.policy) or mine == record:
                    continue
                if self._catalog.is_owner(record.name, record.policy):
                    candidates[(record.name, record.policy)] = record
        learned = []
        for (name, policy), candidate in sorted(candidates.items()):
            try:
                decided = await self._catalog.at_quorum(name, policy)
            except NodeError as err:
                log.info("repair: the owners of a bucket record do not decide on it (%s); none learned", err)
                continue
            if decided is None or decided != candidate:
                continue
            mine = held.get(name)
            if mine is not None:
                if mine.policy != decided.policy:
                    continue  # another policy's record here: the audit names it, an operator settles it
                log.info("repair: bucket %r generation %s here lost to generation %s held by its owners; "
                         "dropped", name, mine.generation, decided.generation)
                await local.delete_bucket(BucketTombstone(name, mine.generation, mine.policy, mine.created))
            try:
                await local.put_bucket(decided)
            except NodeError as err:
                log.info("repair: bucket record from a peer refused: %s", err)
                continue
            held[name] = decided
            learned.append(decided)
        return learned

    def _ownership(self, tables: dict[str, PartitionTable]) -> dict[str, tuple[tuple[str, ...], ...]]:
        """policy -> the effective owners of each of its partitions. Worked out once per layout
        version and set of marked-out nodes, not every round (3 ms a round per policy for nothing at
        1,000 sites and 4,096 partitions); a round then visits only its own and its held partitions."""
        layout = self._layout.current
        key = (layout.version, tuple(n.id for n in layout.nodes if self._is_out(n.id)))
        if self._owners_key != key:
            before, before_mine = self._owners, self._mine
            new_version = self._owners_key is not None and self._owners_key[0] != layout.version
            self._owners = {name: tuple(effective_replicas(table, p, self._is_out, self._site_of)
                                        for p in range(len(table)))
                            for name, table in tables.items()}
            self._mine = {name: tuple(p for p, owners in enumerate(all_owners) if self.node_id in owners)
                          for name, all_owners in self._owners.items()}
            if new_version:  # a layout change: what it gave this node is a rebalance (see _moving)
                self._moved, self._left = {}, {}
                for name, mine in self._mine.items():
                    if name not in before or len(before[name]) != len(self._owners[name]):
                        continue
                    had, r = set(before_mine.get(name, ())), tables[name].policy.replicas
                    self._moved[name] = {p: before[name][p] for p in mine if p not in had and len(before[name][p]) >= r}
                    kept = set(mine)
                    self._left[name] = {p: before[name][p] for p in had if p not in kept}
            self._note_former_owners(before)
            self._owners_key = key
        return self._owners

    @staticmethod
    def _plain_ownership(older: Layout, state: LayoutState) -> dict[str, tuple[tuple[str, ...], ...]]:
        """policy -> the replicas of each partition under `older`, one of `state`'s history."""
        owners = {}
        for policy in older.policies:
            table = state.history_table(older, policy.name)
            if table is not None:
                owners[policy.name] = tuple(table.replicas(p) for p in range(len(table)))
        return owners

    def _note_former_owners(self, before: dict[str, tuple[tuple[str, ...], ...]]) -> None:
        """Add to `_former` the owners of each partition in `before` that own it no more (partitions
        split or merged by a change of bits map by their top bits), and drop the nodes that left the
        layout or own the partition again."""
        members = {n.id for n in self._layout.current.nodes}
        for name, owners in self._owners.items():
            old = before.get(name)
            if not old:
                continue
            old_bits, new_bits = len(old).bit_length() - 1, len(owners).bit_length() - 1
            for p, now in enumerate(owners):
                if new_bits >= old_bits:
                    previous = old[p >> (new_bits - old_bits)]
                else:
                    shift = old_bits - new_bits
                    previous = tuple(n for q in range(p << shift, (p + 1) << shift) for n in old[q])
                former = (self._former.get((name, p), set()) | set(previous)) - set(now)
                former &= members
                if former:
                    self._former[(name, p)] = former
                else:
                    self._former.pop((name, p), None)
        self._former_empty.clear()  # asked again after any change: a stand-in may hold something new

    def _fellows_before(self, group: SyncGroup, owners: tuple[str, ...]) -> int:
        """Other nodes up that owned a chunk partition with this node before the last layout change
        took it away, and own it no more: they hold what this node holds (repair kept the owners
        alike), and hand it back before dropping it, as this node does."""
        if group.is_index:
            return 0
        before = self._left.get(group.policy, {}).get(group.partition, ())
        return sum(1 for o in before if o != self.node_id and o not in owners and self._is_up(o))

    def _moving(self, group: SyncGroup) -> bool:
        """Whether pulling `group` here is a rebalance, not a repair: a chunk partition the last
        layout change gave this node, whose owners before the change (R of them) are all up: the
        data rests on R nodes already and only moves (deferrable, a day). Anything else an owner
        lacks is short of a copy (urgent)."""
        if group.is_index:
            return False
        before = self._moved.get(group.policy, {}).get(group.partition)
        return before is not None and all(self._is_up(o) for o in before if o != self.node_id)

    def partition_health(self) -> dict[str, tuple[int, int]]:
        """policy -> (partitions this node owns, those with an owner it does not see up), by the
        ownership of the last round (for the metrics; no walk of any store)."""
        health = {}
        for name, mine in self._mine.items():
            owners = self._owners.get(name, ())
            short = sum(1 for p in mine if not all(self._is_up(o) for o in owners[p] if o != self.node_id))
            health[name] = (len(mine), short)
        return health

    async def _hand_back_record(self, record: BucketRecord) -> None:
        """A record held here though this node is none of its owners (a copy from before records
        were kept on owners only, or a handoff's): once a majority of its owners hold it, the copy
        goes; if they hold its tombstone, the tombstone comes here."""
        local = self._peers.local
        try:
            owners = self._catalog.record_owners(record.name, record.policy)
            results, errors = await self._catalog.at_owners(record.name, record.policy,
                                                            lambda r: r.put_bucket(record))
        except (UnknownPolicy, PolicyUnsatisfiable):
            return
        if any(isinstance(err, NoSuchBucket) for n, err in errors.items() if n in owners):
            await local.delete_bucket(BucketTombstone(record.name, record.generation, record.policy, record.created))
            return
        if sum(1 for n in results if n in owners) >= majority(len(owners)):
            if await local.drop_bucket_record(record.name, record.generation):
                log.info("repair: handed bucket record %r back to its owners", record.name)

    async def _enter_listings(self) -> None:
        """Enter each record this node is the first owner of in its tenant's bucket list, once per
        run of the node (a create that crashed before its entry, records from before lists)."""
        records, _ = await self._peers.local.bucket_catalog()
        for record in records:
            if (record.name, record.generation) in self._listed:
                continue
            try:
                first = self._catalog.record_owners(record.name, record.policy)[0]
            except (UnknownPolicy, PolicyUnsatisfiable):
                continue
            if first == self.node_id and await self._catalog.enter(record):
                self._listed.add((record.name, record.generation))

    async def plan(self) -> Plan:
        await self._learn_buckets()
        await self._enter_listings()
        return await self._local_plan()

    def _tables(self) -> dict[str, PartitionTable]:
        """The partition table of every policy the layout can satisfy."""
        tables = {}
        for policy in self._layout.current.policies:
            try:
                tables[policy.name] = self._layout.table(policy.name)
            except PolicyUnsatisfiable:
                continue
        return tables

    async def _local_plan(self) -> Plan:
        """The groups this node owns and those it holds for others, from its own store and the
        layout alone (no call to a peer)."""
        layout = self._layout.current
        held_chunks, bucket_list = await self._peers.local.held_groups()
        me = self.node_id
        owned: dict[SyncGroup, tuple[str, ...]] = {}
        foreign: dict[SyncGroup, tuple[str, ...]] = {}
        tables = self._tables()
        ownership = self._ownership(tables)
        here = layout.location_of(me)
        self.residency_violations = sum(len(parts) for name, parts in held_chunks.items()
                                        if name in tables and not layout.policy(name).allows(here))
        for name, all_owners in ownership.items():
            for p in self._mine[name]:
                owned[SyncGroup(name, p)] = all_owners[p]
            for p in held_chunks.get(name, ()):
                if p < len(all_owners) and me not in all_owners[p]:
                    foreign[SyncGroup(name, p)] = all_owners[p]
        buckets = {}
        for record in bucket_list:
            bucket_table = tables.get(record.policy)
            if bucket_table is None:
                continue
            buckets[record.name] = record
            p = bucket_partition(record.name, bucket_table.bits)
            owners = effective_replicas(bucket_table, p, self._is_out, self._site_of)
            group = SyncGroup(record.policy, bucket=record.name, generation=record.generation)
            (owned if me in owners else foreign)[group] = owners
        return Plan(owned, foreign, buckets)

    async def run_round(self) -> None:
        plan = await self.plan()
        pr = self.progress
        pr.running, pr.round_started, pr.round_bytes = True, self._clock.monotonic(), 0
        pr.groups_total, pr.groups_done, pr._behind_now = len(plan.owned) + len(plan.foreign), 0, set()
        pr.handoff_items = 0
        self._fetching.clear()
        limit = asyncio.Semaphore(GROUP_CONCURRENCY)

        async def bounded(coro: Coroutine[Any, Any, None]) -> None:
            async with limit:
                try:
                    await coro
                except (NodeError, StorageError) as err:  # one group's trouble never stops the round
                    log.info("repair: %s", err)

        by_peer: dict[str, list[SyncGroup]] = {}
        for group, owners in plan.owned.items():
            for o in owners:
                if o != self.node_id and self._is_up(o):
                    by_peer.setdefault(o, []).append(group)
        mine = dict(zip(plan.owned, await self._peers.local.sync_summaries(list(plan.owned))))
        self._moves_seen = False
        await asyncio.gather(*(bounded(self._sync_with(peer, groups, mine, plan))
                               for peer, groups in by_peer.items()))
        pr.groups_done = len(plan.owned)
        if self._moves_seen:
            self._rebalance.open()
        else:
            self._rebalance.close()
        if plan.foreign:
            self._handback.open()
        else:
            self._handback.close()
        await asyncio.gather(*(bounded(self._hand_back(g, owners, plan)) for g, owners in plan.foreign.items()))
        if (self._expiry_pending or self._clock.monotonic() >= self._next_expiry) and self._gc.allowed():
            self._next_expiry = self._clock.monotonic() + self._expire_every
            self._expiry_pending = False
            await asyncio.gather(*(bounded(self._expire(g, owners, plan)) for g, owners in plan.owned.items()
                                   if g.is_index))
        pr.groups_behind = len(pr._behind_now)
        pr.groups_done = pr.groups_total
        pr.rounds_completed += 1
        pr.last_round_finished_ms = int(self._clock.time() * 1000)

    async def _sync_with(self, peer: str, groups: list[SyncGroup], mine: dict[SyncGroup, tuple[bytes, int]],
                         plan: Plan) -> None:
        theirs = await self._peers.replica(peer).sync_summaries(groups)
        differing = [g for g, (digest, _) in zip(groups, theirs) if digest != mine[g][0]]
        self.progress._behind_now.update(differing)
        self.progress.groups_done = min(self.progress.groups_done + len(groups) - len(differing),
                                        len(plan.owned))

        async def pull(group: SyncGroup) -> None:
            job = self._urgent
            if self._moving(group):
                self._moves_seen = True
                if not self._rebalance.allowed(self._peer_energy(peer)):
                    return  # deferred by this site's energy state or the peer's: a later round moves it
                job = self._rebalance
            try:
                await self._pull(peer, group, plan, job)
            except (NodeError, StorageError) as err:
                log.info("repair: pulling %s from %s: %s", group, peer, err)
            self.progress.groups_done = min(self.progress.groups_done + 1, len(plan.owned))
        await gather_bounded([partial(pull, g) for g in differing], PULLS_PER_PEER)

    async def _pull(self, peer: str, group: SyncGroup, plan: Plan, job: Job) -> None:
        """Fetch what `peer` holds of `group` and this node lacks, each frame counted to `job` (a
        rebalance, or urgent repair)."""
        remote = self._peers.replica(peer)
        local = self._peers.local
        theirs = await remote.sync_listing(group)
        ours = await local.sync_listing(group)
        if not group.is_index:
            async def fetch(digest: bytes) -> None:
                if (group.policy, digest) in self._fetching:
                    return  # another owner is already sending it this round
                self._fetching.add((group.policy, digest))
                async with self._transfers:
                    try:
                        frame, tenant = await remote.get_chunk_with_tenant(digest)
                        read_frame_header(frame)  # one above the chunk bound (FrameTooLarge) is not taken
                    except (NodeError, ChunkNotFound, FrameError) as err:
                        self._fetching.discard((group.policy, digest))
                        log.info("repair: %s could not give chunk %s: %s", peer, digest.hex()[:16], err)
                        return
                    await self._paced(job, len(frame), self._peer_energy(peer))
                    await local.put_chunk(frame, policy=group.policy, tenant=tenant)
                    self._count(len(frame))
            await asyncio.gather(*(fetch(d) for d in chunks_missing(theirs, ours)))
            return
        record = plan.buckets[group.bucket]
        for entry in entries_to_pull(theirs, ours, self._expired):
            m = await remote.get_manifest(group.bucket, entry.key, group.generation)
            if m is not None:
                await self._copy_manifest(m, record, local, group, entry.key)

    async def _copy_manifest(self, m: Manifest, record: BucketRecord, to: Replica, group: SyncGroup,
                             key: str) -> None:
        """Write `m` to a replica (ours or a peer's) through the rate limit, and count it. Only a
        manifest of the group's very bucket generation and of the key asked moves."""
        if (m.bucket, m.generation, m.key) != (group.bucket, group.generation, key):
            raise NodeError(f"repair: a manifest of another bucket generation or key came back for {group}; "
                            f"not copied")
        cost = len(m.inline or b"") + MANIFEST_OVERHEAD
        await self._limiter.take(cost)
        if await put_manifest_teaching(to, m, record, lambda: self._confirm(record)):
            self._count(cost)

    async def _confirm(self, record: BucketRecord) -> None:
        """NoSuchBucket unless the name's owners decide on `record` (before teaching it to a node)."""
        if await self._catalog.at_quorum(record.name, record.policy) != record:
            raise NoSuchBucket(f"bucket {record.name!r} generation {record.generation or '(none)'} is not the "
                               f"one its owners hold; not taught")

    async def _paced(self, job: Job, nbytes: int, peer_energy: str) -> None:
        """A turn of `job` for `nbytes` (counted to it; waits while deferred), the repair rate's
        tokens, and for deferrable work below full pace (a grey window nearing its deadline) the
        pause that keeps it at that pace rather than at full rate once allowed."""
        pace = await job.turn(nbytes, peer_energy)
        await self._limiter.take(nbytes)
        if delay := job.slowed_by(nbytes, pace):
            await self._clock.sleep(delay)

    def _count(self, nbytes: int) -> None:
        pr = self.progress
        pr.items_copied += 1
        pr.bytes_copied += nbytes
        pr.round_bytes += nbytes

    def _expired(self, entry: IndexEntry) -> bool:
        return self._clock.time() - version_time(entry.version) > self._tombstone_grace

    # ----- hand-back: data held for owners elsewhere -------------------------------------------

    async def _hand_back(self, group: SyncGroup, owners: tuple[str, ...], plan: Plan) -> None:
        local = self._peers.local
        ours = await local.sync_listing(group)
        if not ours:
            if group.is_index and not self._catalog.is_owner(group.bucket, group.policy):
                await self._hand_back_record(plan.buckets[group.bucket])
            return
        self.progress.handoff_items += len(ours)
        table = self._layout.table(group.policy)
        confirmed = True
        listings: dict[str, list[Any]] = {}
        for owner in owners:
            if not self._is_up(owner):
                confirmed = False
                continue
            try:
                listings[owner] = await self._peers.replica(owner).sync_listing(group)
            except NodeError as err:
                log.info("hand-back of %s to %s: %s", group, owner, err)
                confirmed = False
        wanted: dict[str, list[Any]] = {
            o: chunks_missing(ours, theirs) if not group.is_index else entries_to_push(ours, theirs)
            for o, theirs in listings.items()}
        def key(item: Any) -> Any:
            return item.key if group.is_index else item

        # Deferred, per owner, by this site's energy state or the owner's (a window that suits
        # both): only items short of R go to that owner now (urgent); the others stay here, and
        # what no owner lacks goes at once. A copy kept for a later window after its owners had
        # a newer version (a delete) came back once its tombstone expired, with the grace (an
        # hour) far shorter than a hand-back's deadline (a day).
        held_back: set[Any] = set()
        if group.is_index and not self._was_owner(group):
            # A stand-in's hint older than the grace that no owner holds: never pushed (a site
            # cut off for longer than the grace brought back objects deleted meanwhile), never
            # dropped either (every owner may have lost it); counted in handoff_items, logged.
            held_back = stale_hints(ours, listings.values(), self._expired)
            if held_back:
                log.warning("hand-back of %s: %d entr(ies) older than the tombstone grace that no owner holds "
                            "are kept here, not handed back (deleted since, or lost by every owner)",
                            group, len(held_back))
                wanted = {o: [x for x in w if key(x) not in held_back] for o, w in wanted.items()}
        deferring = {o for o in wanted if not self._handback.allowed(self._peer_energy(o))}
        if deferring:
            short = short_of_copies([key(x) for x in ours], {o: [key(x) for x in w] for o, w in wanted.items()},
                                    table.policy.replicas, self._fellows_before(group, owners))
            held_back |= {key(x) for o in deferring for x in wanted[o] if key(x) not in short}
            wanted = {o: [x for x in w if key(x) in short] if o in deferring else w for o, w in wanted.items()}
        for owner, items in wanted.items():
            if not items:
                continue   # every item is at R counting this copy: a later round hands it back
            try:
                await self._push(owner, group, items, plan, urgent=owner in deferring)
            except NodeError as err:
                log.info("hand-back of %s to %s: %s", group, owner, err)
                confirmed = False
        done = [x for x in ours if key(x) not in held_back]
        if confirmed and done and len(owners) >= table.policy.replicas:
            if group.is_index:
                await local.drop_index_entries(group.bucket, done, group.generation)
            else:
                await local.drop_chunks(group.policy, done)
            self.progress.handoff_items -= len(done)
            log.info("handed %d item(s) of %s back to %s", len(done), group, ", ".join(owners))

    def _former_of(self, group: SyncGroup) -> set[str]:
        """The former owners (`_former`) of an index group's partition."""
        bits = self._layout.table(group.policy).bits
        return self._former.get((group.policy, bucket_partition(group.bucket, bits)), set())

    def _was_owner(self, group: SyncGroup) -> bool:
        """Whether this node owned the index group's partition before an ownership change it saw
        (a former owner handing back, whose copies the owners wait for before dropping a tombstone),
        rather than holding a stand-in's hint."""
        return self.node_id in self._former_of(group)

    async def _push(self, owner: str, group: SyncGroup, items: list[Any], plan: Plan, *, urgent: bool) -> None:
        """Send `items` (chunk digests, or index entries) that `owner` lacks; a deferrable push stops
        between two chunks when the energy state turns to defer it."""
        remote = self._peers.replica(owner)
        local = self._peers.local
        job = self._urgent if urgent else self._handback
        energy = self._peer_energy(owner)
        if not group.is_index:
            for digest in items:
                if not urgent and not self._handback.allowed(energy):
                    raise NodeError("hand-back paused by this site's energy state or the owner's")
                frame, tenant = await local.get_chunk_with_tenant(digest)  # its tenant's key seals it there too
                await self._paced(job, len(frame), energy)
                await remote.put_chunk(frame, policy=group.policy, tenant=tenant)
                self._count(len(frame))
            return
        record = plan.buckets[group.bucket]
        for entry in items:
            m = await local.get_manifest(group.bucket, entry.key, group.generation)
            if m is None:
                continue
            try:
                await self._copy_manifest(m, record, remote, group, entry.key)
            except ObjectLocked as err:
                # The owner keeps a locked version this stand-in's entry would remove: the removal
                # was refused when it was written (an owner refusing is never stood in for), so it
                # is dropped with the rest, never handed back later when the retention ends.
                log.info("hand-back of %s to %s: %s dropped: %s", group, owner, entry.key[:80], err)

    # ----- tombstone expiry ----------------------------------------------------------------

    async def _expire(self, group: SyncGroup, owners: tuple[str, ...], plan: Plan) -> None:
        """Drop tombstones past the grace once every owner, and every former owner of the group's
        partition not known to hold nothing of it (`_former`), has the same one or none: a node
        still holding an older live version would otherwise bring the object back, an owner by
        repair, a former owner by handing it back (a drained node whose hand-back came after the
        grace brought a deleted object back on every owner)."""
        local = self._peers.local
        expired = [e for e in await local.sync_listing(group) if e.deleted and self._expired(e)]
        if not expired:
            return
        self._expiry_pending = True  # walked again next round, until every one is dropped
        table = self._layout.table(group.policy)
        former = sorted(n for n in self._former_of(group) if n not in owners and (group, n) not in self._former_empty)
        if not all(self._is_up(o) for o in (*owners, *former)):
            return
        if len(owners) < table.policy.replicas:
            return
        views = []
        for node in (*owners, *former):
            if node == self.node_id:
                continue
            listing = await self._peers.replica(node).sync_listing(group)
            if not listing and node in former:
                self._former_empty.add((group, node))  # nothing to hand back: not asked again
            views.append({e.key: e for e in listing})
        removed = await local.drop_index_entries(group.bucket, droppable_tombstones(expired, views),
                                                 group.generation)
        self.progress.tombstones_removed += removed
