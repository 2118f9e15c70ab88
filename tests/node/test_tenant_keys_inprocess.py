"""Chunk files sealed with the owning tenant's data key, in-process: chunk names are keyed per
(tenant, policy), so a chunk file belongs to one tenant, the owner of the bucket it was written
for; every replica seals it with that tenant's key, and so does a node that repair re-fills (by
pulling from a peer) or hands data back to (by pushing)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import grpc
import pytest

from maillage.node.rpc.servicers import BulkHandlers
from maillage.node.service.tenancy import CALLER, Caller
from maillage.placement import chunk_partition
from maillage.proto import bulk
from maillage.proto.frame import chunk_digest, encode_frame
from maillage.proto.trust.access import AccessDoc, AccessKey, ensure_naming_secret
from maillage.storage import Manifest
from maillage.testing.inmemory import InMemoryMesh

from .conftest import TIMINGS, make_layout, run

CHUNK = 1024  # the in-memory mesh's chunk size
DATA = bytes(random.Random(11).randbytes(4 * CHUNK + 100))
OTHER = bytes(random.Random(12).randbytes(3 * CHUNK + 7))
KEY_ID = slice(5, 13)  # where an encrypted chunk file names its data key


@pytest.fixture()
def mesh(tmp_path) -> Iterator[InMemoryMesh]:
    m = InMemoryMesh(make_layout(), tmp_path, timings=TIMINGS, encrypted=True)
    m.push_access(ensure_naming_secret(AccessDoc(), random.Random(1)))  # keyed chunk names
    yield m
    m.close()


def sealing_scopes(mesh: InMemoryMesh, digest: bytes) -> dict[str, tuple[str, str] | None]:
    """For each node holding the chunk: the scope of the data key its file names."""
    out = {}
    for node_id in mesh.chunk_holders(digest):
        local = mesh.nodes[node_id].local
        key_id = local.chunks.path_of(digest).read_bytes()[KEY_ID]
        assert local.chunks.keys is not None
        out[node_id] = local.chunks.keys.scope_of(key_id)
    return out


def assert_sealed_by(mesh: InMemoryMesh, manifest: Manifest, tenant: str, *, at_least: int = 2) -> None:
    assert manifest.chunks
    for ref in manifest.chunks:
        scopes = sealing_scopes(mesh, ref.digest)
        assert len(scopes) >= at_least, (ref.digest.hex()[:16], scopes)
        assert set(scopes.values()) == {("tenant", tenant)}, (ref.digest.hex()[:16], scopes)
        for node_id in scopes:
            assert mesh.nodes[node_id].local.chunks.tenant_of(ref.digest) == tenant


def test_every_replica_seals_a_chunk_with_the_bucket_owners_key(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("hospital-scans", "france-only", owner="hospital")
        await mesh.create_bucket("housing-files", "france-only", owner="housing")
        await mesh.create_bucket("housing-eu", "eu-wide", owner="housing")
        a = await mesh.put("hospital-scans", "a", DATA)
        b = await mesh.put("housing-files", "b", DATA)
        c = await mesh.put("housing-eu", "c", OTHER)
        assert_sealed_by(mesh, a, "hospital")
        assert_sealed_by(mesh, b, "housing")
        assert_sealed_by(mesh, c, "housing")  # one key per tenant, whatever the policy
        # the key that seals the tenant's chunks is the one that seals its manifests
        for ref in a.chunks:
            for node_id in mesh.chunk_holders(ref.digest):
                local = mesh.nodes[node_id].local
                assert local.chunks.keys is not None
                key_id = local.chunks.path_of(ref.digest).read_bytes()[KEY_ID]
                assert key_id == local.chunks.keys.tenant_key("hospital")
        assert await mesh.get("hospital-scans", "a") == DATA
        assert await mesh.get("housing-files", "b") == DATA
        assert await mesh.get("housing-eu", "c") == OTHER
        # a copy into another tenant's bucket is re-named, and sealed with the destination owner's key
        await mesh.create_bucket("hospital-copy", "france-only", owner="hospital")
        copied = await mesh.copy("housing-files", "b", "hospital-copy", "b")
        assert_sealed_by(mesh, copied, "hospital")
        assert await mesh.get("hospital-copy", "b") == DATA
    run(scenario())


def test_a_wiped_node_refilled_by_repair_seals_with_the_tenants_key(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("hospital-scans", "france-only", owner="hospital")
        manifests = [await mesh.put("hospital-scans", f"k{i}", DATA[i:]) for i in range(4)]
        held: dict[str, set[bytes]] = {n: set() for n in mesh.nodes}
        for m in manifests:
            for ref in m.chunks:
                for n in mesh.chunk_holders(ref.digest):
                    held[n].add(ref.digest)
        victim = max(held, key=lambda n: len(held[n]))
        assert held[victim]
        chunks = mesh.nodes[victim].local.chunks
        for digest in list(chunks.iter_digests()):  # the wipe: every chunk file of the victim gone
            chunks.delete(digest)
        assert not any(chunks.has(d) for d in held[victim])
        await mesh.repair(2)  # the victim pulls what it owns from its peers
        assert all(chunks.has(d) for d in held[victim])
        assert chunks.keys is not None
        for digest in held[victim]:
            assert chunks.path_of(digest).read_bytes()[KEY_ID] == chunks.keys.tenant_key("hospital")
            assert chunks.tenant_of(digest) == "hospital"
        for m in manifests:
            assert_sealed_by(mesh, m, "hospital")
    run(scenario())


def test_data_handed_back_after_an_outage_is_sealed_with_the_tenants_key(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("hospital-scans", "france-only", owner="hospital")
        victim = "lyon-1"
        mesh.down(victim)
        manifests = [await mesh.put("hospital-scans", f"k{i}", DATA[i:]) for i in range(6)]
        table = mesh.nodes["paris-1"].layout.table("france-only")
        owed = {ref.digest for m in manifests for ref in m.chunks
                if victim in table.replicas(chunk_partition(ref.digest, table.bits))}
        assert owed, "some chunks written during the outage belong on the victim"
        assert not any(mesh.nodes[victim].local.chunks.has(d) for d in owed)
        mesh.up(victim)
        # only the others run repair: the handoff nodes push (hand back) to the victim, which pulls nothing
        await mesh.repair(2, nodes=[n for n in mesh.nodes if n != victim])
        chunks = mesh.nodes[victim].local.chunks
        assert chunks.keys is not None
        for digest in owed:
            assert chunks.has(digest)
            assert chunks.path_of(digest).read_bytes()[KEY_ID] == chunks.keys.tenant_key("hospital")
        for m in manifests:
            assert_sealed_by(mesh, m, "hospital")
    run(scenario())


# ----- the bulk handlers: PutChunk takes the tenant, GetChunk tells a node -----------------------

class Aborted(Exception):
    pass


class Context:
    """Enough of grpc.aio.ServicerContext for the bulk handlers."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.code: grpc.StatusCode | None = None

    def invocation_metadata(self):
        return self.metadata

    def set_trailing_metadata(self, md) -> None:
        self.trailing = tuple(md)

    async def abort(self, code, details) -> None:
        self.code = code
        raise Aborted(details)


def test_bulk_handlers_take_the_tenant_of_a_put_and_tell_it_to_nodes_only(mesh) -> None:
    node = mesh.nodes["paris-1"]
    handlers = BulkHandlers(node.local, node.service, node.plane)
    peer, reader = Caller(node_id="toulouse-1"), Caller(key=AccessKey("AK1", "secret", "hospital", "read-only"))
    plain = os.urandom(CHUNK)
    digest = chunk_digest(plain, b"n" * 32)
    frame = encode_frame(plain, digest=digest, key=b"n" * 32)

    async def call(handler, request, caller, metadata=()):
        context = Context(metadata)
        CALLER.set(caller)
        try:
            reply = await handler(request, context)
        except Aborted:
            reply = None
        return reply, context

    async def scenario():
        for bad in ("a\x00b", "x" * 64, "-lead", "é"):
            _, ctx = await call(handlers.put_chunk, frame, peer,
                                ((bulk.POLICY_KEY, "france-only"), (bulk.TENANT_KEY, bad)))
            assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT, bad
        assert not node.local.chunks.has(digest)
        _, ctx = await call(handlers.put_chunk, frame, peer,
                            ((bulk.POLICY_KEY, "france-only"), (bulk.TENANT_KEY, "hospital")))
        assert ctx.code is None and node.local.chunks.tenant_of(digest) == "hospital"
        reply, ctx = await call(handlers.get_chunk, digest, peer)
        assert reply == frame and ctx.trailing == ((bulk.TENANT_KEY, "hospital"),)
        await mesh.create_bucket("hospital-scans", "france-only", owner="hospital")
        await mesh.create_bucket("housing-files", "france-only", owner="housing")
        reply, ctx = await call(handlers.get_chunk, bulk.chunk_request(digest, "hospital-scans"), reader)
        assert reply == frame and ctx.trailing == ()  # a client learns no tenant
        # A chunk read is an object read: another tenant's key is refused the bucket, and a chunk
        # held for another tenant is not there for its own bucket; a client names its bucket.
        other = Caller(key=AccessKey("AK2", "secret", "housing", "read-write"))
        _, ctx = await call(handlers.get_chunk, bulk.chunk_request(digest, "hospital-scans"), other)
        assert ctx.code is grpc.StatusCode.PERMISSION_DENIED
        _, ctx = await call(handlers.get_chunk, bulk.chunk_request(digest, "housing-files"), other)
        assert ctx.code is grpc.StatusCode.NOT_FOUND
        _, ctx = await call(handlers.get_chunk, digest, reader)
        assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT
    run(scenario())
