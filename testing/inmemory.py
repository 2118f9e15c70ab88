"""A whole mesh in one process: real node objects over real stores, an in-memory network, a manual clock.

Every node is wired by `maillage.node.daemon.wiring.Node`, exactly as `maillage node run` wires it, with its
own data directory (a real `ChunkStore` and RocksDB `MetaStore`); only the transport differs: calls
to another node go straight to that node's `LocalReplica` or gossip, and a node marked down (or cut
off) answers every call with `PeerUnavailable`, as an unreachable gRPC peer does. Time is a
`ManualClock` shared by all nodes (each node reads it through its own `SkewedClock`, so a test can
set one node's wall clock ahead or behind), and every random choice comes from a seeded `random.Random`, so
a test steps through suspicion, grace periods and repair rounds in milliseconds, deterministically.

    mesh = InMemoryMesh(layout, tmp_path)
    await mesh.create_bucket("scans", "france-only")
    await mesh.put("scans", "a", b"...")
    mesh.down("paris-1")
    await mesh.repair()
    mesh.close()
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from maillage.node.daemon.wiring import Node, Timings
from maillage.node.data.coordinator import Listing, Upload, UploadStream
from maillage.node.errors import PeerUnavailable
from maillage.node.replicas.antientropy import SyncGroup
from maillage.node.replicas.replica import BucketInventory
from maillage.node.replicas.transport import Heartbeat
from maillage.node.rpc.boundary import error_from_peer
from maillage.node.runtime.clock import Clock, ManualClock
from maillage.node.trust.access_state import AccessState
from maillage.node.trust.documents import LayoutDoc, SignedLayouts
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import Layout, format_layout
from maillage.proto.frame import decode_frame
from maillage.proto.trust.access import AccessDoc
from maillage.proto.trust.node_access import encode_node_access, publish
from maillage.proto.trust.signing import LayoutSigner
from maillage.storage import BucketRecord, BucketTombstone, ChunkStore, DataKeys, Manifest, MetaStore, NodeKey

__all__ = ["SkewedClock", "InMemoryNetwork", "InMemoryTransport", "InMemoryReplica", "InMemoryMesh"]



class SkewedClock:
    """A node's view of the mesh's `ManualClock`: the same monotonic time and sleeps, and a wall
    clock `offset` seconds ahead (negative: behind), as a node whose clock is off has."""

    def __init__(self, base: Clock, offset: float = 0.0) -> None:
        self.base = base
        self.offset = offset
        self.monotonic = base.monotonic  # type: ignore[method-assign]  # hot: read by every detector call

    def monotonic(self) -> float:
        return self.base.monotonic()

    def time(self) -> float:
        return self.base.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)


class InMemoryNetwork:
    """Which nodes exist and which are reachable: a node is down, a pair is cut off, or (with
    `loss`) a call is lost at random."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._down: set[str] = set()
        self._cut: set[frozenset[str]] = set()
        self.calls: Counter[str] = Counter()  # calls made to each node
        self.loss = 0.0                         # chance that a call is lost (as unanswered)
        self.rng = random.Random(0)             # draws the losses: seed it for a reproducible run
        self.methods: Counter[str] = Counter()  # calls made of each replica method
        # How many times a replica call yields to the event loop before it runs (a test's
        # interleaving of concurrent calls: (source, target, method) -> count; none by default)
        self.yields: Callable[[str, str, str], int] = lambda _source, _target, _method: 0

    def attach(self, node: Node) -> None:
        self.nodes[node.node_id] = node

    def down(self, node_id: str) -> None:
        self._down.add(node_id)

    def up(self, node_id: str) -> None:
        self._down.discard(node_id)

    def is_down(self, node_id: str) -> bool:
        return node_id in self._down

    def cut(self, a: str, b: str) -> None:
        """Partition two nodes from each other (both stay up for everyone else)."""
        self._cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self._cut.clear()

    def reach(self, source: str, target: str) -> Node:
        """The node `source` calls, or PeerUnavailable as a dead or partitioned peer gives."""
        self.calls[target] += 1
        if source in self._down:
            raise PeerUnavailable(f"node {target} did not answer: UNAVAILABLE: {source} itself is down")
        if target in self._down or frozenset((source, target)) in self._cut or target not in self.nodes:
            raise PeerUnavailable(f"node {target} did not answer: UNAVAILABLE: unreachable from {source}")
        if self.loss and self.rng.random() < self.loss:
            raise PeerUnavailable(f"node {target} did not answer: UNAVAILABLE: message lost")
        return self.nodes[target]

    def transport(self, source: str) -> InMemoryTransport:
        return InMemoryTransport(self, source)


class InMemoryReplica:
    """Another node's `LocalReplica` seen through the network: the same typed errors as over gRPC."""

    def __init__(self, network: InMemoryNetwork, source: str, node_id: str) -> None:
        self._network = network
        self._source = source
        self.node_id = node_id

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._network.methods[method] += 1
        for _ in range(self._network.yields(self._source, self.node_id, method)):
            await asyncio.sleep(0)
        target = self._network.reach(self._source, self.node_id)
        try:
            return await getattr(target.local, method)(*args, **kwargs)
        except Exception as exc:
            raise error_from_peer(exc, self.node_id) from None

    async def has_chunks(self, digests: Sequence[bytes], policy: str = "") -> list[bool]:
        result: list[bool] = await self._call("has_chunks", list(digests), policy)
        return result

    async def put_chunk(self, frame: bytes, *, policy: str, tenant: str = "") -> bool:
        return bool(await self._call("put_chunk", frame, policy=policy, tenant=tenant))

    async def get_chunk(self, digest: bytes) -> bytes:
        frame: bytes = await self._call("get_chunk", digest)
        return frame

    async def get_chunk_with_tenant(self, digest: bytes) -> tuple[bytes, str]:
        found: tuple[bytes, str] = await self._call("get_chunk_with_tenant", digest)
        return found

    async def put_manifest(self, manifest: Manifest) -> bool:
        return bool(await self._call("put_manifest", manifest))

    async def get_manifest(self, bucket: str, key: str, generation: str | None = None) -> Manifest | None:
        found: Manifest | None = await self._call("get_manifest", bucket, key, generation)
        return found

    async def list_index(self, bucket: str, prefix: str, start_after: str,
                         limit: int, generation: str | None = None) -> tuple[list[Manifest], bool]:
        entries, truncated = await self._call("list_index", bucket, prefix, start_after, limit, generation)
        # as the wire carries it (ListIndex): an entry without its chunk list or inline bytes
        return [dataclasses.replace(m, chunks=(), inline=None) for m in entries], truncated

    async def put_bucket(self, record: BucketRecord) -> None:
        await self._call("put_bucket", record)

    async def get_bucket(self, name: str) -> BucketRecord | None:
        found: BucketRecord | None = await self._call("get_bucket", name)
        return found

    async def delete_bucket(self, tombstone: BucketTombstone) -> None:
        await self._call("delete_bucket", tombstone)

    async def list_buckets(self) -> list[BucketRecord]:
        records: list[BucketRecord] = await self._call("list_buckets")
        return records

    async def bucket_catalog(self) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        catalog: tuple[list[BucketRecord], list[BucketTombstone]] = await self._call("bucket_catalog")
        return catalog

    async def put_listing(self, record: BucketRecord) -> None:
        await self._call("put_listing", record)

    async def remove_listing(self, tombstone: BucketTombstone, tenant: str) -> None:
        await self._call("remove_listing", tombstone, tenant)

    async def listing(self, policy: str, tenant: str) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        entries: tuple[list[BucketRecord], list[BucketTombstone]] = await self._call("listing", policy, tenant)
        return entries

    async def sync_summaries(self, groups: Sequence[SyncGroup]) -> list[tuple[bytes, int]]:
        summaries: list[tuple[bytes, int]] = await self._call("sync_summaries", list(groups))
        return summaries

    async def sync_listing(self, group: SyncGroup) -> list[Any]:
        listing: list[Any] = await self._call("sync_listing", group)
        return listing

    async def referenced_chunks(self, policy: str) -> list[bytes]:
        refs: list[bytes] = await self._call("referenced_chunks", policy)
        return refs

    async def inventory(self, bucket: str = "") -> tuple[list[BucketInventory], list[bytes]]:
        inv: tuple[list[BucketInventory], list[bytes]] = await self._call("inventory", bucket)
        return inv


class InMemoryTransport:
    """The `maillage.node.replicas.transport.Transport` of one node over an `InMemoryNetwork`."""

    def __init__(self, network: InMemoryNetwork, source: str) -> None:
        self._network = network
        self._source = source

    def replica(self, node_id: str) -> InMemoryReplica:
        return InMemoryReplica(self._network, self._source, node_id)

    async def heartbeat(self, node_id: str, beat: Heartbeat, *, timeout: float) -> Heartbeat:
        gossip = self._network.reach(self._source, node_id).gossip
        return await gossip.on_ping_req(beat) if beat.probe else gossip.on_heartbeat(beat)

    async def fetch_layout(self, node_id: str, *, timeout: float, before: int = 0) -> LayoutDoc:
        layout = self._network.reach(self._source, node_id).layout
        if before:
            kept = layout.history_doc(before)
            return LayoutDoc(*kept) if kept else LayoutDoc(0, "", b"")
        return LayoutDoc(layout.current.version, layout.text, layout.signature)

    async def fetch_access(self, node_id: str, *, timeout: float) -> LayoutDoc:
        access = self._network.reach(self._source, node_id).access
        return LayoutDoc(access.version, access.text, access.signature)

    async def close(self) -> None:
        pass


async def _pieces(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


class InMemoryMesh:
    """One `Node` per node of `layout`, each in `root / node_id`, over one in-memory network.
    `encrypted`: each node's stores encrypt at rest as a real node's do (a node key per node, kept
    in memory, in `node_keys`), so tests can check which data key seals a file.
    The simulator (`maillage.testing.sim`) passes its own `network`, a `base_clock` on virtual time
    (the nodes then read it, not `clock`) and an `executor` that runs store calls inline."""

    def __init__(self, layout: Layout, root: Path, *, timings: Timings | None = None,
                 chunk_size: int = 1024, seed: int = 0, workers: int = 4, encrypted: bool = False,
                 network: InMemoryNetwork | None = None, base_clock: Clock | None = None,
                 executor: Executor | None = None) -> None:
        self.layout = layout
        self.root = root
        self.clock = ManualClock()
        self.base_clock: Clock = base_clock if base_clock is not None else self.clock
        self.network = network if network is not None else InMemoryNetwork()
        self.signer = LayoutSigner.generate()   # the admin's key: the nodes only verify with it
        self.signed = SignedLayouts(self.signer.verifier())
        self.timings = timings or Timings(repair_rate=0, scrub_rate=0)
        self._executor = executor if executor is not None else ThreadPoolExecutor(
            workers, thread_name_prefix="inmemory-storage")
        self._metas: list[MetaStore] = []
        self.nodes: dict[str, Node] = {}
        self.node_keys: dict[str, NodeKey] = {}
        self.clocks: dict[str, SkewedClock] = {}  # each node's wall clock: the mesh's, plus its skew
        self._rng = random.Random(seed)
        self._chunk_size = chunk_size
        self._encrypted = encrypted
        self._last_signed: tuple[Layout, str, bytes] | None = None
        for n in layout.nodes:
            self._start_node(n.id, layout)

    def _signed_layout(self, layout: Layout) -> tuple[str, bytes]:
        """The layout's text and the admin's signature, made once per layout (not once per node)."""
        if self._last_signed is None or self._last_signed[0] is not layout:
            text = format_layout(layout)
            self._last_signed = (layout, text, self.signer.sign(layout.version, text, kind="layout"))
        return self._last_signed[1], self._last_signed[2]

    def _start_node(self, node_id: str, layout: Layout) -> Node:
        text, signature = self._signed_layout(layout)
        data_dir = self.root / node_id
        data_dir.mkdir(parents=True, exist_ok=True)
        state = LayoutState(data_dir / "layout.toml", layout, signature, text)
        access = AccessState(data_dir / "access.signed", self.signer.verifier())
        meta = MetaStore(data_dir / "meta")
        self._metas.append(meta)
        keys = None
        if self._encrypted:
            self.node_keys[node_id] = NodeKey.generate()
            keys = DataKeys(meta, self.node_keys[node_id])
            meta.use_data_keys(keys)
        clock = self.clocks[node_id] = SkewedClock(self.base_clock)
        node = Node(node_id, state, ChunkStore(data_dir / "chunks", fsync=False, keys=keys), meta, self.signed,
                    access, self._executor, transport_for=partial(self.network.transport, node_id),
                    timings=self.timings, chunk_size=self._chunk_size, clock=clock,
                    rng=random.Random(self._rng.random()))
        self.network.attach(node)
        self.nodes[node_id] = node
        return node

    # ----- faults ----------------------------------------------------------------------------

    def down(self, node_id: str) -> None:
        self.network.down(node_id)

    def up(self, node_id: str) -> None:
        self.network.up(node_id)

    def up_nodes(self) -> list[str]:
        return [n for n in self.nodes if not self.network.is_down(n)]

    def skew(self, node_id: str, seconds: float) -> None:
        """Set how far (seconds, either way) the node's wall clock is off the mesh's."""
        self.clocks[node_id].offset = seconds

    # ----- the data path, through any node's coordinator -----------------------------------

    def via(self, node_id: str | None = None) -> Node:
        """The node to coordinate through: `node_id`, or the first node that is up."""
        return self.nodes[node_id if node_id is not None else self.up_nodes()[0]]

    def push_access(self, doc: AccessDoc, owners: Iterable[str] = ("", "hospital", "housing")) -> None:
        """Publish the master `doc` (`node_access.publish`: derived keys for today's window, naming
        keys for the layout's policies), sign it with the admin's key and offer it to every node (up
        or not), as an admin's push does: e.g. a document with a naming secret, so names are keyed.
        `owners`: bucket owners of in-process tests that are not tenants of `doc` get naming keys too."""
        published = publish(doc, today=datetime.datetime.now(datetime.UTC).date(),
                            policies=[p.name for p in self.layout.policies], owners=owners)
        text = encode_node_access(published)
        signed = LayoutDoc(doc.version, text, self.signer.sign(doc.version, text, kind="access"))
        for node in self.nodes.values():
            node.access.offer(signed)

    def apply_layout(self, layout: Layout) -> list[str]:
        """Sign `layout` with the admin's key and offer it to every node that is up, as `maillage
        layout apply` does (a node that is down learns it by gossip); a node it adds starts with it,
        on an empty data directory. Returns the ids of the nodes started."""
        text = format_layout(layout)
        signature = self.signer.sign(layout.version, text, kind="layout")
        started = [n.id for n in layout.nodes if n.id not in self.nodes]
        for node_id in started:
            self._start_node(node_id, layout)
        for node_id in self.up_nodes():
            self.nodes[node_id].layout.offer(layout, signature, text)
        self.layout = layout
        return started

    async def create_bucket(self, name: str, policy: str, *, owner: str = "",
                            via: str | None = None) -> BucketRecord:
        return await self.via(via).coordinator.create_bucket(name, policy, owner)

    async def put(self, bucket: str, key: str, data: bytes, *, via: str | None = None) -> Manifest:
        coordinator = self.via(via).coordinator
        record = await coordinator.head_bucket(bucket)
        manifest, _ = await coordinator.put_object(record, Upload(key), UploadStream(_pieces(data)))
        return manifest

    async def get(self, bucket: str, key: str, *, via: str | None = None) -> bytes:
        """The object's bytes, read as the SDK does: latest manifest, then each chunk verified (with
        the key of the bucket's tenant and policy, as the SDK gets it from `ChunkKey`)."""
        node = self.via(via)
        record = await node.coordinator.head_bucket(bucket)
        manifest = await node.coordinator.head_object(record, key)
        if manifest.inline is not None:
            return manifest.inline
        table = node.layout.table(node.coordinator.chunk_policy(record, manifest))
        name_key = node.coordinator.key_of(record)
        parts = []
        for ref in manifest.chunks:
            frame = await node.coordinator.read_chunk(table, ref.digest)
            parts.append(decode_frame(frame, expected_digest=ref.digest, key=name_key))
        return b"".join(parts)

    async def list_objects(self, bucket: str, *, via: str | None = None, prefix: str = "") -> Listing:
        coordinator = self.via(via).coordinator
        return await coordinator.list_objects(await coordinator.head_bucket(bucket), prefix=prefix)

    async def copy(self, source_bucket: str, source_key: str, bucket: str, key: str, *,
                   via: str | None = None) -> Manifest:
        coordinator = self.via(via).coordinator
        return await coordinator.copy_object(await coordinator.head_bucket(source_bucket), source_key,
                                             await coordinator.head_bucket(bucket), key)

    async def delete(self, bucket: str, key: str, *, via: str | None = None) -> int:
        coordinator = self.via(via).coordinator
        return await coordinator.delete_object(await coordinator.head_bucket(bucket), key)

    async def delete_bucket(self, bucket: str, *, via: str | None = None) -> None:
        coordinator = self.via(via).coordinator
        await coordinator.delete_bucket(await coordinator.head_bucket(bucket))

    # ----- cluster life ----------------------------------------------------------------------

    async def repair(self, rounds: int = 1, nodes: Iterable[str] | None = None) -> None:
        """`rounds` anti-entropy rounds on every node that is up (in node order)."""
        for _ in range(rounds):
            for node_id in list(nodes) if nodes is not None else self.up_nodes():
                await self.nodes[node_id].repairer.run_round()

    async def collect_garbage(self) -> None:
        for node_id in self.up_nodes():
            await self.nodes[node_id].collector.collect()

    async def gossip(self, rounds: int = 1) -> None:
        """`rounds` sweeps of the membership protocol: in each, every node that is up runs as many
        protocol periods as the mesh has nodes (SWIM probes one peer per period, in a shuffled
        round-robin, so each node probes each peer about once a sweep), each period followed by
        the layout fetches it started."""
        for _ in range(rounds):
            for _period in range(len(self.nodes)):
                for node_id in self.up_nodes():
                    await self.nodes[node_id].gossip.round()
                for node in self.nodes.values():
                    await node.gossip.settle()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # ----- what each node stores -----------------------------------------------------------

    def holders(self, bucket: str, key: str) -> set[str]:
        """Nodes whose index holds an entry (live or tombstone) for the key, in any generation
        of the bucket."""
        return {n for n, node in self.nodes.items()
                if any(m.key == key for m in node.local.meta.iter_manifests(bucket))}

    def key_names(self, node_id: str) -> set[tuple[str, str]]:
        """Every (bucket, key) whose name the node's index holds, in any bucket or generation."""
        return {(m.bucket, m.key) for m in self.nodes[node_id].local.meta.iter_manifests()}

    def chunk_holders(self, digest: bytes) -> set[str]:
        return {n for n, node in self.nodes.items() if node.local.chunks.has(digest)}

    def close(self) -> None:
        for meta in self._metas:
            meta.close()
        self._executor.shutdown(wait=True)
