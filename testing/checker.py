"""The checker: reads a workload history back against the healed mesh and names every anomaly.

What it proves, after all faults are healed (Jepsen's set/register checks, adapted to last-writer-
wins objects; an ``unknown`` operation may or may not have happened, a ``fail`` one did not):

* **nothing lost**: for every acknowledged put P, the final value of its key is P itself or comes
  from an operation not entirely before P (a later or concurrent put, or a delete) that was not
  refused; in particular an object absent after healing needs a delete that did not end before P
  began;
* **no resurrection**: after an acknowledged delete D, the final value is not a write that ended
  before D began;
* **no invented bytes**: every read returned bytes that a write of this workload produced for that
  very key (checked byte for byte by ``decode_value``), never bytes of a refused write, never bytes
  failing their digest (the SDK verifies BLAKE3; a mismatch surfaces as a bad value here);
* **versions follow real time**: an acknowledged put or delete that began after another one on
  the same key ended carries a higher version (HLC), whatever the coordinators' clocks say;
* **listings agree**: the final listing of each bucket is exactly its set of present keys;
* **residency**: no copy of any object (manifest or chunk) on a node outside its bucket's policy
  (``maillage.client.admin.collect_audit``, plus the nodes' own inventories);
* **full replication within a bound**: every piece of every present object is held by R distinct
  allowed sites, polled from the nodes' inventories; the time this took after healing is reported,
  and exceeding ``replication_bound`` is an anomaly. Where a piece sits off its preferred replicas
  (a hinted handoff not handed back yet) is reported as ``misplaced``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from maillage.client import AsyncClient, MaillageError, NoSuchKey, ObjectSummary, Profile, admin
from maillage.placement import Layout, bucket_partition, chunk_partition, partition_table
from maillage.testing.workload import FAIL, OK, UNKNOWN, BadValue, BucketSpec, Op, decode_value

__all__ = ["Report", "check", "read_final", "check_history", "replication_state", "Replication"]


@dataclass
class Replication:
    """Where the present objects rest, from the nodes' own inventories."""
    objects: int = 0
    fully: int = 0
    under: list[str] = field(default_factory=list)        # "bucket/key: 1 of 2 sites"
    violations: list[str] = field(default_factory=list)   # residency
    misplaced: list[str] = field(default_factory=list)    # piece not on a preferred replica
    unreachable: dict[str, str] = field(default_factory=dict)
    audit: str = ""                                       # which audit ran


@dataclass
class Report:
    mode: str
    seed: int
    history: list[Op]
    faults: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    final: dict[tuple[str, str], int | None] = field(default_factory=dict)
    replication: Replication | None = None
    time_to_full: float | None = None
    replication_bound: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for op in self.history:
            out.setdefault(op.kind, {OK: 0, FAIL: 0, UNKNOWN: 0})[op.outcome] += 1
        return out

    def text(self) -> str:
        lines = [f"fault harness report: mode={self.mode} seed={self.seed}"]
        total = {OK: 0, FAIL: 0, UNKNOWN: 0}
        for kind, c in sorted(self.counts().items()):
            lines.append(f"  {kind:7s} ok={c[OK]:4d} fail={c[FAIL]:3d} unknown={c[UNKNOWN]:3d}")
            for k in total:
                total[k] += c[k]
        lines.append(f"  total   ok={total[OK]:4d} fail={total[FAIL]:3d} unknown={total[UNKNOWN]:3d}")
        present = sum(1 for v in self.final.values() if v is not None)
        lines.append(f"  keys after heal: {present} present, {len(self.final) - present} absent")
        lines.append("  faults: " + ("; ".join(self.faults) or "none"))
        r = self.replication
        if r is not None:
            ttf = "not reached" if self.time_to_full is None else f"{self.time_to_full:.1f}s"
            lines.append(f"  replication: {r.fully}/{r.objects} objects on R sites, time to full "
                         f"replication {ttf} (bound {self.replication_bound:.0f}s); "
                         f"misplaced pieces {len(r.misplaced)}; residency violations {len(r.violations)}"
                         f" [{r.audit}]")
        for n in self.notes:
            lines.append(f"  note: {n}")
        lines.append(f"  anomalies: {len(self.anomalies)}")
        lines.extend(f"    - {a}" for a in self.anomalies[:40])
        if len(self.anomalies) > 40:
            lines.append(f"    ... {len(self.anomalies) - 40} more")
        return "\n".join(lines)


# ----- final state --------------------------------------------------------------------------------

async def _read_final(profile: Profile, buckets: Sequence[BucketSpec], keys: Sequence[str],
                      deadline: float) -> tuple[dict, dict, list[str]]:
    final: dict[tuple[str, str], int | None] = {}
    listed: dict[str, set[str]] = {}
    problems: list[str] = []
    async with AsyncClient(profile=profile, timeout=5) as client:
        for b in buckets:
            for key in keys:
                last = ""
                while True:
                    try:
                        data = await (await client.get_object(b.name, key)).read()
                        _, bb, kk, seq = decode_value(data)
                        if (bb, kk) != (b.name, key):
                            raise BadValue(f"bytes of {bb}/{kk} seq {seq}")
                        final[(b.name, key)] = seq
                        break
                    except NoSuchKey:
                        final[(b.name, key)] = None
                        break
                    except BadValue as exc:
                        problems.append(f"final read of {b.name}/{key} returned bad bytes: {exc}")
                        break
                    except Exception as exc:  # retried until the deadline
                        last = f"{type(exc).__name__}: {exc}"
                        if time.monotonic() > deadline:
                            problems.append(f"{b.name}/{key} unreadable after heal: {last[:200]}")
                            break
                        await asyncio.sleep(0.5)
            while True:
                try:
                    listed[b.name] = {o.key async for o in client.list_objects(b.name)
                                      if isinstance(o, ObjectSummary)}
                    break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        problems.append(f"bucket {b.name} could not be listed after heal: {exc}")
                        break
                    await asyncio.sleep(0.5)
    return final, listed, problems


def read_final(profile: Profile, buckets: Sequence[BucketSpec], keys: Sequence[str],
               timeout: float = 30.0) -> tuple[dict, dict, list[str]]:
    """Read every key of every bucket once the mesh is healed: ({(bucket, key): seq | None},
    {bucket: listed keys}, problems). Unavailable answers are retried until ``timeout``."""
    return asyncio.run(_read_final(profile, buckets, keys, time.monotonic() + timeout))


# ----- the history --------------------------------------------------------------------------------

def check_history(history: Iterable[Op], final: dict[tuple[str, str], int | None],
                  listed: dict[str, set[str]] | None = None) -> tuple[list[str], list[str]]:
    """(anomalies, notes) of a history against the final state; see the module docstring."""
    anomalies: list[str] = []
    notes: list[str] = []
    by_key: dict[tuple[str, str], list[Op]] = {}
    for op in history:
        if op.kind != "list":
            by_key.setdefault((op.bucket, op.key), []).append(op)
        if op.error.startswith("BAD VALUE"):
            anomalies.append(f"read returned bytes no write produced: {op.line()}")
    stale = integrity = 0
    for (bucket, key), ops in sorted(by_key.items()):
        puts = {op.seq: op for op in ops if op.kind == "put"}
        deletes = [op for op in ops if op.kind == "delete"]
        for g in (op for op in ops if op.kind == "get"):
            if "IntegrityError" in g.error:
                integrity += 1
            if g.outcome != OK or g.seq is None:
                continue
            w = puts.get(g.seq)
            if w is None:
                anomalies.append(f"read of a value never written to this key: {g.line()}")
            elif w.outcome == FAIL:
                anomalies.append(f"read returned the value of a refused write: {g.line()} <- {w.line()}")
            elif w.start > g.end:
                anomalies.append(f"read returned a value before its write began: {g.line()} <- {w.line()}")
            elif any(p.outcome == OK and p.seq != g.seq and p.start > w.end and p.end < g.start
                     for p in puts.values()) or any(
                    d.outcome == OK and d.start > w.end and d.end < g.start for d in deletes):
                stale += 1
        acked = sorted((op for op in ops if op.kind in ("put", "delete") and op.outcome == OK and op.version),
                       key=lambda op: op.start)
        for y in acked:
            for x in acked:
                if x.end < y.start and y.version <= x.version:
                    anomalies.append(f"VERSION ORDER {bucket}/{key}: {y.line()} began after {x.line()} "
                                     f"ended but got version {y.version} <= {x.version}")
                    break
        if (bucket, key) not in final:
            continue
        f = final[(bucket, key)]
        if f is not None:
            w = puts.get(f)
            if w is None:
                anomalies.append(f"{bucket}/{key}: final value seq {f} was never written to this key")
                continue
            if w.outcome == FAIL:
                anomalies.append(f"{bucket}/{key}: final value comes from a refused write {w.line()}")
            for p in puts.values():
                if p.outcome == OK and p is not w and p.start > w.end:
                    anomalies.append(f"LOST WRITE {bucket}/{key}: acknowledged {p.line()} (v{p.version}) "
                                     f"but the final value is the older {w.line()} (v{w.version})")
            for d in deletes:
                if d.outcome == OK and d.start > w.end:
                    anomalies.append(f"RESURRECTION {bucket}/{key}: acknowledged {d.line()} (v{d.version}) "
                                     f"but the final value is the older {w.line()} (v{w.version})")
        else:
            for p in puts.values():
                if p.outcome != OK:
                    continue
                if not any(d.outcome != FAIL and d.end >= p.start for d in deletes):
                    anomalies.append(f"LOST WRITE {bucket}/{key}: acknowledged {p.line()} (v{p.version}) "
                                     "but the object is absent after healing and no delete followed it")
    if listed is not None:
        for bucket, keys in sorted(listed.items()):
            known = {k for (b, k) in final if b == bucket}   # keys of other writers are not judged
            present = {k for (b, k), v in final.items() if b == bucket and v is not None}
            keys = keys & known
            if keys != present:
                anomalies.append(f"final listing of {bucket} disagrees with reads: listed-only "
                                 f"{sorted(keys - present)}, read-only {sorted(present - keys)}")
    if stale:
        notes.append(f"{stale} stale read(s) during faults (older value after a newer acknowledged one)")
    if integrity:
        notes.append(f"{integrity} read(s) ended with IntegrityError (no verified copy reachable)")
    return anomalies, notes


# ----- replication and residency ------------------------------------------------------------------

def replication_state(layout: Layout, admin_profile: Profile, buckets: Sequence[BucketSpec],
                      final: dict[tuple[str, str], int | None]) -> Replication:
    """One look at every node's inventory: copies, residency and placement of present objects."""
    out = Replication()
    try:
        rep = admin.collect_audit(admin_profile)
        out.violations.extend(str(v) for v in rep.violations)
        out.audit = (f"maillage audit: {len(rep.violations)} violations, {rep.under_replicated} "
                     f"pieces under-replicated (tombstones and unreferenced chunks included), "
                     f"unreachable {list(rep.unreachable)}")
    except MaillageError as exc:  # reported, the inventory check below still runs
        out.audit = f"maillage audit failed: {type(exc).__name__}: {exc}"
    inventories, unreachable = admin.fetch_inventories(layout, admin_profile, timeout=10)
    out.unreachable = unreachable
    for b in buckets:
        policy = layout.policy(b.policy)
        out.violations.extend(admin.bucket_violations(layout, inventories, b.name, policy))
        table = partition_table(layout, b.policy)
        preferred_index = set(table.replicas(bucket_partition(b.name, table.bits)))
        for (bucket, key), seq in sorted(final.items()):
            if bucket != b.name or seq is None:
                continue
            out.objects += 1
            try:
                manifest = admin.fetch_manifest(layout, b.policy, bucket, key, admin_profile, timeout=5)
            except Exception as exc:
                out.under.append(f"{bucket}/{key}: manifest unreadable ({exc})")
                continue
            r = admin.survey(layout, inventories, unreachable, policy, manifest)
            out.violations.extend(r.violations)
            if r.copies >= policy.replicas:
                out.fully += 1
            else:
                out.under.append(f"{bucket}/{key}: {r.copies} of {policy.replicas} sites")
            holders = {h.node for h in r.holdings if h.manifest}
            for n in sorted(preferred_index - holders):
                out.misplaced.append(f"manifest {bucket}/{key} missing on preferred replica {n}")
            for ref in {c.digest for c in manifest.chunks}:
                want = set(table.replicas(chunk_partition(ref, table.bits)))
                for n in sorted(want):
                    inv = inventories.get(n)
                    if inv is not None and ref not in inv.chunks:
                        out.misplaced.append(f"chunk {ref.hex()[:12]} of {bucket}/{key} missing on "
                                             f"preferred replica {n}")
    return out


def wait_replicated(layout: Layout, admin_profile: Profile, buckets: Sequence[BucketSpec], final: dict, bound: float,
                    *, placed: bool = False) -> tuple[Replication, float | None]:
    """Poll until every present object has R copies (and, with ``placed``, sits on its preferred
    replicas); returns the last state and the seconds it took (None: not within ``bound``)."""
    t0 = time.monotonic()
    while True:
        state = replication_state(layout, admin_profile, buckets, final)
        done = not state.under and not state.unreachable and (not placed or not state.misplaced)
        if done:
            return state, time.monotonic() - t0
        if time.monotonic() - t0 > bound:
            return state, None
        time.sleep(1.0)


def wait_settled(admin_profile: Profile, timeout: float = 30.0) -> str | None:
    """Wait until every node answers and sees every other node up (the mesh healed, as an
    operator would check with `maillage status`); None when settled, else what was still wrong.
    Until then a coordinator may route around a peer it still believes silent."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            with admin.ClusterAdmin(admin_profile) as cluster:
                answers = cluster.statuses()
        except MaillageError as exc:
            last = str(exc)
        else:
            unsettled = [f"{node}: {reply}" if isinstance(reply, str) else
                         f"{node} sees {', '.join(p.node_id for p in reply.peers if p.state != 'up')} not up"
                         for node, reply in answers.items()
                         if isinstance(reply, str) or any(p.state != "up" for p in reply.peers)]
            if not unsettled:
                return None
            last = "; ".join(unsettled[:4])
        time.sleep(0.3)
    return last


def check(mode: str, seed: int, history: list[Op], profile: Profile, admin_profile: Profile, layout: Layout,
          buckets: Sequence[BucketSpec], keys: Sequence[str], *, faults: Sequence[str] = (),
          replication_bound: float = 20.0, read_timeout: float = 30.0, placed: bool = False) -> Report:
    """The whole check after healing: once every node sees every other up, final reads, history,
    residency, replication time."""
    report = Report(mode, seed, list(history), list(faults), replication_bound=replication_bound)
    not_settled = wait_settled(admin_profile)
    if not_settled is not None:
        report.anomalies.append(f"the mesh did not settle within 30 s of healing: {not_settled}")
    final, listed, problems = read_final(profile, buckets, keys, read_timeout)
    report.final = final
    report.anomalies.extend(problems)
    anomalies, notes = check_history(history, final, listed)
    report.anomalies.extend(anomalies)
    report.notes.extend(notes)
    state, took = wait_replicated(layout, admin_profile, buckets, final, replication_bound, placed=placed)
    report.replication, report.time_to_full = state, took
    report.anomalies.extend(f"RESIDENCY VIOLATION: {v}" for v in state.violations)
    if state.unreachable:
        report.anomalies.append(f"nodes unreachable for the audit: {state.unreachable}")
    if took is None:
        report.anomalies.append(f"not fully replicated within {replication_bound:.0f}s of healing: "
                                + "; ".join((state.under + (state.misplaced if placed else []))[:8]))
    elif state.misplaced and not placed:
        report.notes.append(f"{len(state.misplaced)} piece(s) not on their preferred replicas yet "
                            f"(handback pending), e.g. {state.misplaced[0]}")
    return report
