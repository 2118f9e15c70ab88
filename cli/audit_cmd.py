"""`maillage audit`: ask every node what it stores and prove, item by item, that every copy sits
inside its policy.

Placement says where data *should* be; the audit never trusts it. It reads the layout from one
node, asks every node of that layout for its inventory (`Replica.Inventory`: manifest keys per
bucket, the chunks those manifests reference that are stored there, and every chunk digest on the
disk), and judges each copy against the rules of the admin's layout:

* Manifests. A key of bucket B (its manifest: the key name, and the bytes of an inline object) may
  rest only on a node whose location B's policy allows.
* Chunks. Dedup is scoped by policy, so identical bytes may legitimately sit in Germany for an
  EU-wide bucket while a France-only bucket references the same digest. A chunk on a node is a
  violation only when NO bucket referencing that digest has a policy allowing the node. Which
  buckets reference a digest is learnt from the inventories (manifests and chunks held together)
  and from the newest manifest of every live chunked key (`Replica.GetManifest`), because a chunk
  is placed by its digest and usually does not sit next to the manifests that reference it. A
  digest that no known manifest references (an orphan waiting for GC after a delete) is counted,
  not judged.
* Replication. An item is under-replicated when fewer than R distinct sites inside its policy hold
  it: a manifest counts the sites holding the key; a chunk counts, for each policy referencing it,
  the sites inside that policy whose inventory lists it (a referenced chunk found nowhere counts).
  A node that does not answer proves nothing, so its copies do not count.

The verdict needs no secret and writes nothing. `collect_audit` is the public entry point (the
benchmarks and the fault harness call it); `evaluate` is the pure judgement, given the facts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from maillage.placement import Layout, PlacementError, Policy, UnknownPolicy, format_location, parse_layout

from .common import CommandError, add_endpoint_option, endpoints

__all__ = ["AuditError", "AuditReport", "Inventory", "collect_audit", "evaluate", "fetch_inventories",
           "fetch_layout", "add_parser"]

CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.enable_retries", 0),
)
WORKERS = 16
LIST_PAGE = 1000
SHOWN_VIOLATIONS = 50


class AuditError(CommandError):
    """The audit could not start: no layout or no bucket list from the endpoint."""


# ----- facts: what the nodes say ---------------------------------------------------------------

@dataclass
class Inventory:
    node_id: str
    keys: dict[str, set[str]]          # bucket -> manifest keys stored on this node (tombstones too)
    chunks: set[bytes]                 # every chunk digest on this node's disk
    refs: dict[str, set[bytes]] = field(default_factory=dict)  # bucket -> digests its manifests here reference


class _Channels:
    """One gRPC channel per address, shared by the worker threads (sync channels are thread-safe)."""

    def __init__(self) -> None:
        import grpc

        self._grpc = grpc
        self._open: dict[str, object] = {}

    def get(self, address: str):
        channel = self._open.get(address)
        if channel is None:
            channel = self._open[address] = self._grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        return channel

    def close(self) -> None:
        for channel in self._open.values():
            channel.close()
        self._open.clear()


@contextmanager
def _channels(given: _Channels | None = None) -> Iterator[_Channels]:
    """The caller's channels, or fresh ones closed on exit."""
    if given is not None:
        yield given
        return
    channels = _Channels()
    try:
        yield channels
    finally:
        channels.close()


def _why(err) -> str:
    return f"{err.code().name}: {err.details()}"


def _parallel(fn: Callable, items: list) -> list:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items))) as pool:
        return list(pool.map(fn, items))


def fetch_layout(addresses: str | Iterable[str], *, timeout: float = 10.0,
                 channels: _Channels | None = None) -> tuple[Layout, str]:
    """The layout of the first address that answers (comma-separated or a list): (layout, address)."""
    import grpc

    from maillage.proto import pb, rpc

    if isinstance(addresses, str):
        addresses = addresses.split(",")
    addresses = [a.strip() for a in addresses if a.strip()]
    if not addresses:
        raise AuditError("no endpoint given")
    problems = []
    with _channels(channels) as chans:
        for address in addresses:
            try:
                doc = rpc.ClusterStub(chans.get(address)).GetLayout(pb.GetLayoutRequest(), timeout=timeout)
            except grpc.RpcError as err:
                problems.append(f"{address}: {_why(err)}")
                continue
            try:
                return parse_layout(doc.text), address
            except PlacementError as exc:
                problems.append(f"{address}: its layout does not parse: {exc}")
    raise AuditError(f"cannot read the layout: {'; '.join(problems)}")


def fetch_inventories(layout: Layout, *, timeout: float = 15.0,
                      channels: _Channels | None = None) -> tuple[dict[str, Inventory], dict[str, str]]:
    """Ask every node of the layout, in parallel, for its inventory: (inventories, {node: why unreachable})."""
    import grpc

    from maillage.proto import pb, rpc

    def one(chans: _Channels, node_id: str) -> Inventory | str:
        stub = rpc.ReplicaStub(chans.get(layout.node(node_id).address))
        try:
            reply = stub.Inventory(pb.InventoryRequest(), timeout=timeout)
        except grpc.RpcError as err:
            return _why(err)
        return Inventory(node_id, {b.bucket: set(b.keys) for b in reply.buckets}, set(reply.all_chunks),
                         {b.bucket: set(b.chunks) for b in reply.buckets})

    ids = [n.id for n in layout.nodes]
    with _channels(channels) as chans:
        results = dict(zip(ids, _parallel(lambda n: one(chans, n), ids)))
    found = {n: r for n, r in results.items() if isinstance(r, Inventory)}
    missing = {n: r for n, r in results.items() if isinstance(r, str)}
    return found, missing


def _bucket_policies(chans: _Channels, address: str, timeout: float) -> dict[str, str]:
    import grpc

    from maillage.proto import pb, rpc

    try:
        reply = rpc.ObjectsStub(chans.get(address)).ListBuckets(pb.ListBucketsRequest(), timeout=timeout)
    except grpc.RpcError as err:
        raise AuditError(f"cannot list the buckets through {address}: {_why(err)}") from None
    return {b.name: b.policy for b in reply.buckets}


@dataclass(frozen=True)
class _Entry:
    version: tuple[int, str]
    deleted: bool
    size: int
    node: str                          # a node holding this newest version


def _newest_entries(layout: Layout, inventories: Mapping[str, Inventory], chans: _Channels,
                    timeout: float, unreachable: dict[str, str]) -> dict[tuple[str, str], _Entry]:
    """(bucket, key) -> newest index entry over every node holding keys of the bucket."""
    import grpc

    from maillage.proto import pb, rpc

    jobs = [(node, bucket) for node, inv in inventories.items() for bucket, keys in inv.keys.items() if keys]

    def listing(job: tuple[str, str]) -> list[pb.Manifest] | str:
        node, bucket = job
        stub = rpc.ReplicaStub(chans.get(layout.node(node).address))
        entries, cursor = [], ""
        while True:
            try:
                reply = stub.ListIndex(pb.ListIndexRequest(bucket=bucket, start_after=cursor, limit=LIST_PAGE),
                                       timeout=timeout)
            except grpc.RpcError as err:
                return _why(err)
            entries.extend(reply.entries)
            if not reply.truncated or not reply.entries:
                return entries
            cursor = reply.entries[-1].key

    newest: dict[tuple[str, str], _Entry] = {}
    for (node, bucket), result in zip(jobs, _parallel(listing, jobs)):
        if isinstance(result, str):
            unreachable.setdefault(node, f"ListIndex {bucket}: {result}")
            continue
        for m in result:
            entry = _Entry((m.version, m.writer), m.deleted, m.size, node)
            held = newest.get((bucket, m.key))
            if held is None or entry.version > held.version:
                newest[(bucket, m.key)] = entry
    return newest


def _manifest_refs(layout: Layout, newest: Mapping[tuple[str, str], _Entry], chans: _Channels,
                   timeout: float) -> dict[bytes, set[str]]:
    """digest -> buckets, from the newest manifest of every live chunked key."""
    import grpc

    from maillage.proto import pb, rpc
    from maillage.proto.limits import INLINE_MAX

    wanted = [(bk, e) for bk, e in newest.items() if not e.deleted and e.size > INLINE_MAX]

    def chunks_of(item) -> list[bytes]:
        (bucket, key), entry = item
        stub = rpc.ReplicaStub(chans.get(layout.node(entry.node).address))
        try:
            reply = stub.GetManifest(pb.GetManifestRequest(bucket=bucket, key=key), timeout=timeout)
        except grpc.RpcError:
            return []                  # the node went away meanwhile: its inventory refs still count
        return [c.digest for c in reply.manifest.chunks] if reply.found else []

    refs: dict[bytes, set[str]] = {}
    for ((bucket, _), _), digests in zip(wanted, _parallel(chunks_of, wanted)):
        for d in digests:
            refs.setdefault(d, set()).add(bucket)
    return refs


# ----- judgement: pure -------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditReport:
    """What an audit proved. ``violations`` are sentences naming item, bucket, policy, node, place."""

    layout_version: int
    nodes: int                         # nodes in the layout (all were asked)
    buckets: int
    objects: int                       # live keys
    manifests: int                     # distinct keys with a manifest anywhere (tombstones too)
    chunks: int                        # distinct chunk digests stored anywhere
    copies: int                        # manifest copies + chunk frames, over every node that answered
    sites: int                         # distinct sites holding at least one copy
    violations: list[str]
    under_replicated: int              # manifests + chunks with fewer than R sites inside their policy
    unreachable: list[str]             # node ids that did not answer
    unreferenced_chunks: int = 0       # digests no known manifest references (awaiting GC)
    unknown_buckets: list[str] = field(default_factory=list)  # keys of buckets with no record

    @property
    def ok(self) -> bool:
        """No copy outside its policy."""
        return not self.violations

    @property
    def fully_replicated(self) -> bool:
        return self.ok and self.under_replicated == 0 and not self.unreachable

    def as_dict(self) -> dict:
        doc = asdict(self)
        doc.update(ok=self.ok, fully_replicated=self.fully_replicated)
        return doc

    def to_json(self) -> str:
        """The report as a JSON document (text), with ``ok`` and ``fully_replicated``."""
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def _allow_text(policy: Policy) -> str:
    return ", ".join(format_location(a) for a in policy.allow)


def evaluate(layout: Layout, inventories: Mapping[str, Inventory], unreachable: Iterable[str],
             bucket_policies: Mapping[str, str], live_keys: int,
             manifest_refs: Mapping[bytes, Iterable[str]] = {}) -> AuditReport:
    """Judge the facts: every copy against the policies of the buckets it belongs to."""
    policies: dict[str, Policy | None] = {}
    for bucket, name in bucket_policies.items():
        try:
            policies[bucket] = layout.policy(name)
        except UnknownPolicy:
            policies[bucket] = None    # a policy gone from the layout allows nothing: every copy is unproven

    def describe(bucket: str) -> str:
        policy = policies[bucket]
        name = bucket_policies[bucket]
        return f"bucket {bucket} (policy {name}{'' if policy else f', unknown to layout v{layout.version}'})"

    refs: dict[bytes, set[str]] = {d: set(bs) for d, bs in manifest_refs.items()}
    key_sites: dict[tuple[str, str], set[str]] = {}
    chunk_nodes: dict[bytes, list[str]] = {}
    for node_id, inv in inventories.items():
        for bucket, digests in inv.refs.items():
            for d in digests:
                refs.setdefault(d, set()).add(bucket)
        for bucket, keys in inv.keys.items():
            for key in keys:
                key_sites.setdefault((bucket, key), set())
        for d in inv.chunks:
            chunk_nodes.setdefault(d, []).append(node_id)

    violations: list[str] = []
    unknown = sorted({b for inv in inventories.values() for b in inv.keys if b not in policies})
    copies = 0
    holding_sites: set[str] = set()
    for node_id in sorted(inventories):
        inv = inventories[node_id]
        node = layout.node(node_id)
        location = layout.location_of(node_id)
        where = f"{node_id} at {format_location(location)}"
        held = sum(len(k) for k in inv.keys.values()) + len(inv.chunks)
        copies += held
        if held:
            holding_sites.add(node.site)
        for bucket in sorted(inv.keys):
            policy = policies.get(bucket)
            if bucket not in policies:
                continue
            allowed = policy is not None and policy.allows(location)
            for key in sorted(inv.keys[bucket]):
                if allowed:
                    key_sites[(bucket, key)].add(node.site)
                else:
                    outside = f"outside {_allow_text(policy)}" if policy else "with no policy allowing it"
                    violations.append(f"key {key} of {describe(bucket)} is on {where}, {outside}")
        for d in sorted(inv.chunks):
            buckets = sorted(b for b in refs.get(d, ()) if b in policies)
            if not buckets:
                continue
            if any(policies[b] is not None and policies[b].allows(location) for b in buckets):
                continue
            allowed_somewhere = sorted({_allow_text(policies[b]) for b in buckets if policies[b]})
            outside = f"outside {'; '.join(allowed_somewhere)}" if allowed_somewhere else "with no policy allowing it"
            whose = " and ".join(describe(b) for b in buckets)
            violations.append(f"chunk {d.hex()[:16]}.. of {whose} is on {where}, {outside}")

    under = 0
    for (bucket, _), sites in key_sites.items():
        policy = policies.get(bucket)
        if policy is not None and len(sites) < policy.replicas:
            under += 1
    unreferenced = 0
    for d in set(chunk_nodes) | set(refs):
        buckets = [b for b in refs.get(d, ()) if b in policies]
        if not buckets:
            unreferenced += 1
            continue
        holders = chunk_nodes.get(d, ())
        for policy in {policies[b] for b in buckets if policies[b] is not None}:
            sites = {layout.node(n).site for n in holders if policy.allows(layout.location_of(n))}
            if len(sites) < policy.replicas:
                under += 1
                break

    return AuditReport(
        layout_version=layout.version, nodes=len(layout.nodes), buckets=len(bucket_policies),
        objects=live_keys, manifests=len(key_sites),
        chunks=len(chunk_nodes), copies=copies, sites=len(holding_sites), violations=violations,
        under_replicated=under, unreachable=sorted(set(unreachable)), unreferenced_chunks=unreferenced,
        unknown_buckets=unknown)


# ----- the public entry point ------------------------------------------------------------------

def collect_audit(endpoint: str, *, timeout: float = 10.0) -> AuditReport:
    """Audit the mesh that ``endpoint`` (HOST:PORT, or several comma-separated) belongs to.

    Synchronous. Reads the layout from the endpoint, asks every node of it for its inventory in
    parallel, the endpoint for the buckets and their policies, and the nodes holding each bucket's
    index for the newest manifests. Raises ``AuditError`` when no layout or bucket list can be had;
    a node that does not answer is listed in ``unreachable``, not raised."""
    with _channels() as chans:
        layout, address = fetch_layout(endpoint, timeout=timeout, channels=chans)
        bucket_policies = _bucket_policies(chans, address, timeout)
        inventories, missing = fetch_inventories(layout, timeout=timeout, channels=chans)
        unreachable = dict(missing)
        newest = _newest_entries(layout, inventories, chans, timeout, unreachable)
        refs = _manifest_refs(layout, newest, chans, timeout)
    # a node that answered its inventory but not a listing left the audit incomplete: unreachable too
    live = sum(1 for (bucket, _), e in newest.items() if not e.deleted and bucket in bucket_policies)
    return evaluate(layout, inventories, unreachable, bucket_policies, live, refs)


# ----- the command -----------------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit", help="prove that every stored copy sits inside its policy",
        description="Ask every node of the layout what it stores (manifests per bucket and every chunk "
                    "on its disk) and check each copy against its bucket's residency policy: a key "
                    "must rest only where its bucket's policy allows; a chunk only where at least one "
                    "bucket referencing it allows (dedup across policies is legitimate). Also counts "
                    "items with fewer than R copies on distinct sites inside their policy. Needs no "
                    "secret and changes nothing. Exit status: 1 on any residency violation (or when "
                    "the audit cannot run), with --require-full also when something is "
                    "under-replicated or a node did not answer; 0 otherwise.")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument("--require-full", action="store_true",
                   help="also fail unless every item has R copies and every node answered")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per-call deadline for each node (default: 10)")
    add_endpoint_option(p)
    p.set_defaults(func=run_command)


def summary(report: AuditReport) -> str:
    unreachable = ", ".join(report.unreachable) if report.unreachable else "none"
    lines = [
        f"audit of layout v{report.layout_version}: {report.nodes} nodes asked, "
        f"{report.nodes - len(report.unreachable)} answered, {report.buckets} bucket(s)",
        f"  objects           {report.objects} live key(s) ({report.manifests} manifest(s) incl. tombstones)",
        f"  copies            {report.copies} ({report.chunks} distinct chunk(s)) on {report.sites} site(s)",
        f"  violations        {len(report.violations)}",
        f"  under-replicated  {report.under_replicated} item(s) with fewer than R copies on distinct sites "
        "inside their policy",
        f"  unreachable       {unreachable}",
    ]
    if report.unreferenced_chunks:
        lines.append(f"  unreferenced      {report.unreferenced_chunks} chunk(s) no manifest references "
                     "(awaiting garbage collection)")
    if report.unknown_buckets:
        lines.append(f"  unknown buckets   {', '.join(report.unknown_buckets)} (keys stored, no bucket record)")
    for v in report.violations[:SHOWN_VIOLATIONS]:
        lines.append(f"  !! {v}")
    if len(report.violations) > SHOWN_VIOLATIONS:
        lines.append(f"  !! ... and {len(report.violations) - SHOWN_VIOLATIONS} more (--json lists all)")
    if not report.ok:
        verdict = f"RESIDENCY VIOLATION: {len(report.violations)} cop(ies) outside their policy"
    elif report.fully_replicated:
        verdict = "every copy inside its policy; fully replicated"
    else:
        verdict = "every copy found is inside its policy; NOT fully replicated"
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CommandError(f"--timeout must be positive (got {args.timeout})")
    report = collect_audit(",".join(endpoints(args)), timeout=args.timeout)
    print(report.to_json() if args.json else summary(report))
    if not report.ok:
        return 1
    if args.require_full and not report.fully_replicated:
        if not args.json:
            print("maillage audit: --require-full: not fully replicated", file=sys.stderr)
        return 1
    return 0

