"""Which policy a bucket is bound to: records on a few owners, decided so no node outside can re-label it.

A bucket's record rests on the OWNERS of its name (`record_owners`): in its policy's partition
table, the R replicas of the partition the name hashes to and the next R-1 handoff nodes on other
sites, 2R-1 nodes inside the policy (one that fails is replaced by a further handoff node). So a
record never rests outside its policy, and finding or changing one asks 2R-1 nodes however large
the mesh; a caller that does not know the name's policy asks its owners in each policy's table
(P*(2R-1)), in parallel. Creating is a claim a majority of them must take (`Coordinator.create_bucket`);
a tenant's bucket list is kept the same way on the owners of the tenant's name (`tenant_buckets`).

Lookups decide from the owners' answers, keeping the decision a few seconds in memory (never on
disk):

* a record counts only if nodes INSIDE its policy hold it, at `confirmation` distinct sites (two,
  or the policy's replicas if fewer): one hostile node claiming a name under a policy it is inside
  of (a German node saying "france-data is eu-wide") is not enough;
* two confirmed records of the name under different policies are a dispute (`BucketDisputed`): the
  bucket is refused until an operator settles it, never served under either;
* records of one policy and several generations (an owner that missed a delete, or the minority
  claim of a creator that lost a race): the one most owners hold, then the newest.

A node's own record is not trusted alone (it may have missed a delete and re-create while down); it
is used only when too few owners answer to decide and no answer contradicts it.

Learning a pushed record is stricter (`check_undisputed`): a node takes a record of a name it does
not hold only if enough of the name's owners in every other policy answer to meet every majority of
them, and none holds the name under that policy. So one German node pushing an `eu-wide` record of
a France-only bucket to the other German nodes is refused while the French owners answer (and
refused too while they cannot). What this does not stop (ARCHITECTURE.md, "Threat model"): with
the owners inside the true policy unreachable, nothing confirms the true record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import cast

from maillage.node.errors import (
    BucketAlreadyExists,
    BucketDisputed,
    NodeError,
    NoSuchBucket,
    QuorumNotReached,
)
from maillage.node.replicas.quorum import RoutedAround
from maillage.node.replicas.replica import Replica
from maillage.node.replicas.transport import Peers
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import Layout, PartitionTable, PolicyUnsatisfiable, UnknownPolicy, bucket_partition
from maillage.storage import BucketRecord, BucketTombstone

__all__ = ["CACHE_SECONDS", "Catalog", "listing_key", "majority"]

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
LOOKUP_TIMEOUT = 5.0   # seconds for each owner's answer to a lookup


def listing_key(tenant: str) -> str:
    """What a tenant's bucket list is placed by (hashed like a bucket name; never one: it has '/')."""
    return f"tenant/{tenant}"


def _owners_under(layout: Layout, table: PartitionTable, name: str) -> tuple[str, ...]:
    """`Catalog.record_owners` under a given layout and its table of the policy."""
    partition = bucket_partition(name, table.bits)
    replicas = table.replicas(partition)
    sites = {layout.node(n).site for n in replicas}
    extra: list[str] = []
    for h in table.handoffs(partition):
        if len(extra) >= len(replicas) - 1:
            break
        if layout.node(h).site not in sites:
            extra.append(h)
            sites.add(layout.node(h).site)
    return (*replicas, *extra)


def majority(replicas: int) -> int:
    return replicas // 2 + 1


class Catalog:
    def __init__(self, peers: Peers, layout: LayoutState, clock: Clock = SYSTEM_CLOCK,
                 is_up: Callable[[str], bool] = lambda _: True) -> None:
        self._peers = peers
        self._layout = layout
        self._clock = clock
        self._is_up = is_up  # owners believed down are replaced by handoff nodes, not waited for
        self._cache: dict[str, tuple[float, BucketRecord]] = {}
        peers.local.bucket_listeners.append(self.forget)

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)

    # ----- where a name's record rests ---------------------------------------------------------

    def policies(self) -> list[str]:
        """The policies whose tables can be built (a policy no site can satisfy holds nothing)."""
        out = []
        for policy in self._layout.current.policies:
            try:
                self._layout.table(policy.name)
            except PolicyUnsatisfiable:
                continue
            out.append(policy.name)
        return out

    def record_owners(self, name: str, policy: str) -> tuple[str, ...]:
        """The nodes a record of `name` under `policy` rests on: the R replicas of the partition
        the name hashes to, then its next R-1 handoff nodes on sites not used yet (2R-1 nodes, all
        inside the policy). A record taken by a majority of them (R) survives R-1 of them down and
        is still found on two sites; any R of them meet every such majority."""
        return _owners_under(self._layout.current, self._layout.table(policy), name)

    def moved_owners(self, name: str, policy: str) -> list[str]:
        """The nodes that owned `name`'s record under `policy` in the layouts before the current
        one (`LayoutState.history`) and do not now, still in the layout and inside the policy:
        until repair has handed their copy over, they may be the only ones holding it. Empty when
        the recent changes left the name's owners alone (most names, most changes)."""
        layout = self._layout.current
        current = set(self.record_owners(name, policy))
        members = {n.id for n in layout.nodes}
        allowed = layout.policy(policy)
        out: list[str] = []
        for older in self._layout.history():
            table = self._layout.history_table(older, policy)
            if table is None:
                continue
            for node_id in _owners_under(older, table, name):
                if node_id not in current and node_id not in out and node_id in members \
                        and allowed.allows(layout.location_of(node_id)):
                    out.append(node_id)
        return out

    async def moved(self, name: str, policy: str, answers: dict[str, BucketRecord | None]) -> BucketRecord | None:
        """A record of `name` under `policy` that the current owners (their `answers` given) do not
        confirm but the owners before the last layout changes (`moved_owners`) hold: decided from
        both answers together (two sites inside the policy, as any lookup), then handed to the
        current owners at once, as repair would later. None if there is none, if a current owner
        refuses it (it holds that generation's tombstone: deleted since, or another record), or
        if fewer than a majority of them take it."""
        moved = [n for n in self.moved_owners(name, policy) if n not in answers]
        if not moved:
            return None

        async def ask(node_id: str) -> tuple[str, BucketRecord | None] | None:
            try:
                return node_id, await asyncio.wait_for(self._peers.replica(node_id).get_bucket(name), LOOKUP_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception:  # that node did not answer: the others decide
                return None
        found = [a for a in await asyncio.gather(*(ask(n) for n in moved)) if a is not None]
        try:
            record = self._decide(name, {**answers, **dict(found)})
        except (QuorumNotReached, BucketDisputed):
            return None
        if record is None or record.policy != policy:
            return None
        owners = self.record_owners(name, policy)
        results, errors = await self.at_owners(name, policy, lambda r: r.put_bucket(record))
        if any(isinstance(err, (NoSuchBucket, BucketAlreadyExists)) for n, err in errors.items() if n in owners):
            return None
        if sum(1 for n in results if n in owners) < majority(len(owners)):
            return None
        # No bucket name in the log: this node is inside the policy, but a log line travels further.
        log.info("a bucket record (policy %r, generation %s) found on its owners before a layout change, "
                 "handed to its owners now", record.policy, record.generation[:8])
        return record


    def leads(self, name: str, policy: str) -> bool:
        """Whether this node is the first owner of the name's record (each bucket's periodic work
        runs there only, so no node walks every bucket of the mesh)."""
        try:
            return self.record_owners(name, policy)[0] == self._peers.local.node_id
        except (UnknownPolicy, PolicyUnsatisfiable):
            return False

    def is_owner(self, name: str, policy: str) -> bool:
        try:
            return self._peers.local.node_id in self.record_owners(name, policy)
        except (UnknownPolicy, PolicyUnsatisfiable):
            return False

    async def at_owners(self, name: str, policy: str, op: Callable[[Replica], Awaitable[object]], *,
                        first: int | None = None,
                        ask_suspects: bool = False) -> tuple[dict[str, object], dict[str, Exception]]:
        """`op` on the owners of `name` under `policy` (`first`: only the first that many of them,
        e.g. R to meet every majority), in parallel: the results and the errors, by node. An owner
        that is down or fails is replaced by the partition's next handoff node on a site not used
        yet (inside the policy, as `quorum.ReplicaSets` does); one that REFUSES (it holds another
        record of the name, or this one's tombstone) is not: its answer stands. `ask_suspects`:
        owners believed down are asked all the same (a second look, when the first could not decide:
        a stand-in does not hold what the suspect may)."""
        table = self._layout.table(policy)
        partition = bucket_partition(name, table.bits)
        layout = self._layout.current
        owners = self.record_owners(name, policy)
        asked = owners if first is None else owners[:first]
        handoffs = [h for h in table.handoffs(partition) if h not in owners]
        used = {layout.node(n).site for n in owners}
        results: dict[str, object] = {}
        errors: dict[str, Exception] = {}

        async def attempt(node_id: str, anyway: bool) -> tuple[str, object, Exception | None]:
            if not anyway and not self._is_up(node_id):
                return node_id, None, RoutedAround(f"{node_id} is suspected down (silent); routed around")
            try:
                return node_id, await asyncio.wait_for(op(self._peers.replica(node_id)), LOOKUP_TIMEOUT), None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # that node failed or refused: reported, and routed around if it failed
                return node_id, None, exc

        spare = [n for n in owners if n not in asked] + handoffs
        pending = [(n, ask_suspects) for n in asked]
        while pending:
            answers = await asyncio.gather(*(attempt(n, anyway) for n, anyway in pending))
            pending = []
            for node_id, result, exc in answers:
                if exc is None:
                    results[node_id] = result
                    errors.pop(node_id, None)
                    continue
                errors[node_id] = exc
                if isinstance(exc, (BucketAlreadyExists, NoSuchBucket)):  # a refusal (BucketDeleted over the wire)
                    continue
                substitute = next((h for h in spare if h in owners or layout.node(h).site not in used), None)
                if substitute is not None:
                    spare.remove(substitute)
                    used.add(layout.node(substitute).site)
                    pending.append((substitute, False))
                elif isinstance(exc, RoutedAround):
                    # No other node can stand in: a suspicion is a guess (a slow node, a lost probe),
                    # so ask the suspect after all rather than fail the majority without trying.
                    pending.append((node_id, True))
        return results, errors

    async def answers(self, name: str, policies: Iterable[str] | None = None, *,
                      ask_suspects: bool = False) -> dict[str, BucketRecord | None]:
        """Each owner's live record of `name` (None: it holds none) in each of `policies` (default:
        every policy), for the owners that answer."""
        names = self.policies() if policies is None else list(policies)
        found = await asyncio.gather(*(self.at_owners(name, p, lambda r: r.get_bucket(name), ask_suspects=ask_suspects)
                                       for p in names))
        out: dict[str, BucketRecord | None] = {}
        for results, errors in found:
            for err in errors.values():
                if not isinstance(err, (NodeError, TimeoutError)):
                    raise err
            for node_id, result in results.items():
                out[node_id] = result  # type: ignore[assignment]
        return out

    # ----- lookups -----------------------------------------------------------------------------

    async def get(self, name: str, policy: str | None = None, *, fresh: bool = False) -> BucketRecord:
        record = await self.find(name, policy, fresh=fresh)
        if record is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist")
        return record

    def last_known(self, name: str) -> BucketRecord | None:
        """The record this node last looked up for `name`, however old (a guess, for work started
        while the owners are asked again)."""
        cached = self._cache.get(name)
        return cached[1] if cached else None

    async def find(self, name: str, policy: str | None = None, *, fresh: bool = False) -> BucketRecord | None:
        """The bucket's record (None: there is none). `policy`: where the caller believes it is
        (asked first: its 2R-1 owners); otherwise, or if it is not there, every policy's owners.
        A lookup is cached CACHE_SECONDS; `fresh` (writes) trusts the cache only on an owner of
        the record (told at once of a delete), elsewhere asks the owners of its policy again."""
        cached = self._cache.get(name)
        if cached and self._clock.monotonic() - cached[0] < CACHE_SECONDS:
            if not fresh or self.is_owner(name, cached[1].policy):
                return cached[1]
            policy = policy or cached[1].policy
        every = self.policies()
        first = [policy] if policy in every else every
        record = await self._lookup(name, first)
        if record is None and len(first) < len(every):
            record = await self._lookup(name, [p for p in every if p not in first])
        if record is not None:
            self._cache[name] = (self._clock.monotonic(), record)
        return record

    async def decided(self, name: str, policy: str) -> BucketRecord | None:
        """What the owners of `name` under `policy` decide, asked now (no cache): the record, or
        None (none, or one refuted by a majority holding none); QuorumNotReached if undecidable."""
        return await self._lookup(name, [policy])

    async def at_quorum(self, name: str, policy: str) -> BucketRecord | None:
        """What the owners of `name` under `policy` decide, this node among them (repair compares
        its own record with it): the record, None, or QuorumNotReached (also when two records
        are held by as many owners: nothing to act on) / BucketDisputed."""
        return self._decide(name, await self.answers(name, [policy]), ties=False)

    async def _lookup(self, name: str, policies: list[str]) -> BucketRecord | None:
        """Decide from the owners' answers; when they cannot (too few holders answered), look again
        asking the owners believed down too (a suspicion may be a slow node under load, and the
        stand-ins asked in its place hold no record of the name), and then accept "no record" when
        a majority of the owners in every policy say they hold none (the minority that missed a
        delete does not keep a deleted bucket alive)."""
        answers = await self.answers(name, policies)
        try:
            decided = self._decide(name, answers)
        except QuorumNotReached:
            answers = await self.answers(name, policies, ask_suspects=True)
            decided = await self._second_look(name, policies, answers)
        for policy in policies if decided is None else ():
            decided = await self.moved(name, policy, answers)  # its owners changed and repair has not moved it yet
            if decided is not None:
                break
        return decided

    async def _second_look(self, name: str, policies: list[str],
                           answers: dict[str, BucketRecord | None]) -> BucketRecord | None:
        try:
            return self._decide(name, answers)
        except QuorumNotReached:
            if self._refuted(name, answers, policies):
                return None
            own = await self._peers.local.get_bucket(name)
            if own is not None and own.policy in policies and self.is_owner(name, own.policy) and \
                    all(r is None or r == own for r in answers.values()):
                return own  # too few owners answer to confirm it, and none says otherwise
            raise

    def _refuted(self, name: str, answers: dict[str, BucketRecord | None], policies: list[str]) -> bool:
        """Whether a majority of the name's owners in each of `policies` answered that they hold no
        record of it: a claim taken by a majority would have one of them."""
        for policy in policies:
            owners = self.record_owners(name, policy)
            if sum(1 for n in owners if n in answers and answers[n] is None) < majority(len(owners)):
                return False
        return True

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

    def _decide(self, name: str, answers: dict[str, BucketRecord | None], *,
                ties: bool = True) -> BucketRecord | None:
        sites: dict[BucketRecord, set[str]] = {}
        holders: dict[BucketRecord, int] = {}
        for node_id, record in answers.items():
            if record is None or record.name != name:
                continue
            site = self._holder_inside(node_id, record)
            if site is not None:
                sites.setdefault(record, set()).add(site)
                holders[record] = holders.get(record, 0) + 1
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
                                   "among the owners that answered; try again when more of them are up")
        ranked = sorted(confirmed, key=lambda r: (holders[r], r.created), reverse=True)
        if not ties and len(ranked) > 1 and holders[ranked[0]] == holders[ranked[1]]:
            raise QuorumNotReached(f"bucket {name!r}: two records of it are held by as many of its owners")
        return ranked[0]

    # ----- a tenant's bucket list ----------------------------------------------------------------

    async def enter(self, record: BucketRecord, removal: BucketTombstone | None = None) -> int:
        """Write `record`'s entry (or, with `removal`, its removal) in its owner's bucket list, on
        R owners of the tenant's name in the record's policy table (a failed one replaced by the
        next of them); returns how many took it. A reader asks all 2R-1 and keeps the latest."""
        key, first = listing_key(record.owner), self._replicas(record.policy)  # R of them: reads ask all 2R-1
        if removal is None:
            results, _ = await self.at_owners(key, record.policy, lambda r: r.put_listing(record), first=first)
        else:
            results, _ = await self.at_owners(key, record.policy, lambda r: r.remove_listing(removal, record.owner),
                                              first=first)
        return len(results)

    async def tenant_buckets(self, tenant: str) -> list[BucketRecord]:
        """`tenant`'s buckets, from its bucket list in each policy (P*(2R-1) nodes): per name, the
        latest entry any owner holds (a record, or a removal); only entries of that tenant and
        policy held by nodes inside the policy count."""
        policies = self.policies()
        key = listing_key(tenant)

        async def one(policy: str) -> tuple[dict[str, object], dict[str, Exception]]:
            return await self.at_owners(key, policy, lambda r: r.listing(policy, tenant))
        latest: dict[str, tuple[int, BucketRecord | None]] = {}
        for policy, (results, _errors) in zip(policies, await asyncio.gather(*(one(p) for p in policies))):
            for node_id, answer in results.items():
                records, removals = cast(tuple[list[BucketRecord], list[BucketTombstone]], answer)
                for r in records:
                    if r.policy == policy and r.owner == tenant and self._holder_inside(node_id, r) is not None:
                        if r.name not in latest or latest[r.name][0] < r.created:
                            latest[r.name] = (r.created, r)
                for t in removals:
                    if t.policy == policy and (t.name not in latest or latest[t.name][0] < t.deleted):
                        latest[t.name] = (t.deleted, None)
        return [r for _, (_, r) in sorted(latest.items()) if r is not None]

    # ----- names under other policies ----------------------------------------------------------

    def _replicas(self, policy: str) -> int:
        return self._layout.table(policy).policy.replicas

    async def held_elsewhere(self, name: str, policy: str, *, strict: bool) -> list[tuple[str, BucketRecord]]:
        """(node, record) for each owner of `name` in a policy other than `policy` that holds the
        name under that policy (and is inside it). `strict`: BucketDisputed unless enough of a
        policy's owners answer to meet every majority of them (else the name cannot be shown free
        there)."""
        others = [p for p in self.policies() if p != policy]
        found: list[tuple[str, BucketRecord]] = []
        checked = await asyncio.gather(*(  # R of them meet every majority; strict: ask them all
            self.at_owners(name, p, lambda r: r.get_bucket(name), first=None if strict else self._replicas(p))
            for p in others))
        for other, (results, _errors) in zip(others, checked):
            owners = set(self.record_owners(name, other))
            answered = [n for n in results if n in owners]
            needed = len(owners) - majority(len(owners)) + 1  # answers that meet every majority
            if strict and len(answered) < needed:
                raise BucketDisputed(f"bucket {name!r}: too few of its owners under policy {other!r} answer to "
                                     f"show the name is not held there; refused until they do")
            for node_id, held in results.items():
                if not isinstance(held, BucketRecord):
                    continue
                if held.name == name and held.policy != policy and self._holder_inside(node_id, held) is not None:
                    found.append((node_id, held))
        return found

    async def check_undisputed(self, record: BucketRecord, *, pusher: str | None = None) -> None:
        """BucketDisputed if an owner of the name in another policy holds it under that policy, or
        too few of them answer: a pushed record never re-labels a bucket its holders know under
        another policy. The pusher's own answers count: it is inside `record`'s policy (the node
        plane checked), and an owner under another policy is inside that one too, so it has
        authority over both (excluding it only refused pushes while one other owner was down:
        a write during an outage then lost its index handoff)."""
        against = sorted(n for n, _ in await self.held_elsewhere(record.name, record.policy, strict=True))
        if against:
            log.warning("a record of a bucket under policy %r was refused: %d node(s) hold the name under another "
                        "policy (pushed by %s)", record.policy, len(against), pusher or "this node")
            raise BucketDisputed(f"bucket {record.name!r}: node(s) {', '.join(against)} hold it under another "
                                 f"policy than {record.policy!r}; this record is refused")
