"""Keyed chunk names on real nodes: no cross-tenant dedup, no answer to "does another tenant store
this?", the chunk key only for a bucket's readers, and the SDK checking every chunk with it."""

from __future__ import annotations

import os

import grpc
import pytest

from maillage.client import Client, IntegrityError, PermissionDenied
from maillage.placement import bucket_partition, chunk_partition, partition_table
from maillage.proto import bulk, pb, rpc
from maillage.proto.channels import open_blocking_channel
from maillage.proto.frame import chunk_digest, encode_frame, read_frame_header, verify_frame
from maillage.proto.trust.identity import TlsIdentity

from .conftest import CHUNK
from .helpers import channel, inventory, newest_manifest, signed, signed_call

POLICY = "france-only"


def _pieces(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def _get_chunk(mesh, profile, node_id: str, digest: bytes, bucket: str) -> bytes:
    with channel(mesh, mesh.address(node_id)) as ch:
        call = ch.unary_unary(bulk.GET_CHUNK, request_serializer=None, response_deserializer=None)
        request = bulk.chunk_request(digest, bucket)
        return call(request, timeout=10, metadata=signed(profile, bulk.GET_CHUNK, node_id, request))


def _holder(mesh, digest: bytes) -> str:
    """A node holding the chunk: its first replica, or (when that one was routed around as slow
    while the test wrote: a loaded machine) the handoff node that took it."""
    table = partition_table(mesh.layout, POLICY)
    partition = chunk_partition(digest, table.bits)
    for node_id in (*table.replicas(partition), *table.handoffs(partition)):
        if digest in set(inventory(mesh, mesh.address(node_id)).all_chunks):
            return node_id
    raise AssertionError(f"no node of {POLICY} holds chunk {digest.hex()[:16]}")


def _chunk_key(mesh, profile, bucket: str, node_id: str = "paris-1") -> bytes:
    with channel(mesh, mesh.address(node_id)) as ch:
        reply = signed_call(ch, profile, "Objects", "ChunkKey", pb.ChunkKeyRequest(bucket=bucket), target=node_id,
                            timeout=10)
    return bytes(reply.key)


def _as_node(mesh, node_id: str):
    tls = TlsIdentity.load_node(mesh.trust_dir("paris-1"))
    return open_blocking_channel(mesh.address(node_id), tls=tls, peer=node_id)


@pytest.fixture(scope="module")
def tenants(mesh):
    return mesh.new_key("hospital"), mesh.new_key("housing")


def test_two_tenants_storing_the_same_bytes_get_different_chunk_names(mesh, tenants):
    hospital, housing = tenants
    data = os.urandom(2 * CHUNK + 1000)
    with Client(profile=hospital) as h, Client(profile=housing) as o:
        h.create_bucket("hospital-scans", POLICY)
        h.create_bucket("hospital-more", POLICY)
        o.create_bucket("housing-files", POLICY)
        h.put_object("hospital-scans", "scan.bin", data)
        h.put_object("hospital-more", "scan.bin", data)
        o.put_object("housing-files", "scan.bin", data)
        mine = [d for d, _ in h.object_chunks("hospital-scans", "scan.bin")]
        again = [d for d, _ in h.object_chunks("hospital-more", "scan.bin")]
        theirs = [d for d, _ in o.object_chunks("housing-files", "scan.bin")]
        assert mine == again, "one tenant, one policy: the same names (dedup)"
        assert not set(mine) & set(theirs), "another tenant: other names, no cross-tenant dedup"
        assert not set(mine) & {chunk_digest(p) for p in _pieces(data)}, "names are keyed"
        key = _chunk_key(mesh, hospital, "hospital-scans")
        assert len(key) == 32 and mine == [chunk_digest(p, key) for p in _pieces(data)]
        assert h.get_object("hospital-scans", "scan.bin").read() == data
        assert o.get_object("housing-files", "scan.bin").read() == data


def test_knowing_the_unkeyed_blake3_of_anothers_chunk_gets_nothing(mesh, tenants):
    hospital, housing = tenants
    secret_doc = b"dupont jeanne 1961-04-02, diagnosis: ... " * 2000
    with Client(profile=hospital) as h:
        h.create_bucket("hospital-records", POLICY)
        h.put_object("hospital-records", "dupont.txt", secret_doc)
        names = [d for d, _ in h.object_chunks("hospital-records", "dupont.txt")]
    guesses = [chunk_digest(p) for p in _pieces(secret_doc)]
    with Client(profile=housing) as o:
        o.create_bucket("housing-guesses", POLICY)
    for node in mesh.layout.nodes:
        for guess in guesses:
            with pytest.raises(grpc.RpcError) as info:
                _get_chunk(mesh, housing, node.id, guess, "housing-guesses")
            assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value.details()
    # the name itself exists (the hospital's reader gets it): only its key makes it
    holder = _holder(mesh, names[0])
    assert read_frame_header(_get_chunk(mesh, hospital, holder, names[0], "hospital-records")).keyed


def test_a_chunk_is_read_only_by_a_reader_of_its_bucket(mesh, tenants):
    """GetChunk is authorized like an object read: the request names its bucket, the caller must
    be allowed to read that bucket, and the chunk must be held for that bucket's policy and owner."""
    hospital, housing = tenants
    with Client(profile=hospital) as h, Client(profile=housing) as o:
        h.create_bucket("hospital-chunks", POLICY)
        h.create_bucket("hospital-elsewhere", POLICY)
        o.create_bucket("housing-own", POLICY)
        h.put_object("hospital-chunks", "x.bin", os.urandom(CHUNK + 10))
        name = h.object_chunks("hospital-chunks", "x.bin")[0][0]
    holder = _holder(mesh, name)
    limited = mesh.new_key("hospital", "read-only", ("hospital-elsewhere",))
    revoked = mesh.new_key("hospital")
    with mesh.admin() as admin:
        from maillage.proto.trust.access import revoke_key
        admin.edit_access(lambda doc: revoke_key(doc, revoked.credentials.key_id))
    owned = _get_chunk(mesh, hospital, holder, name, "hospital-chunks")  # the owner reads
    assert read_frame_header(owned).digest == name
    # (chunks are named and shared per tenant and policy: the owner's other France-only bucket reads it too)
    refused = {
        "another tenant's key, naming the bucket": (housing, "hospital-chunks", grpc.StatusCode.PERMISSION_DENIED),
        "another tenant's key, naming its own bucket": (housing, "housing-own", grpc.StatusCode.NOT_FOUND),
        "read-only key of another bucket": (limited, "hospital-chunks", grpc.StatusCode.PERMISSION_DENIED),
        "revoked key": (revoked, "hospital-chunks", grpc.StatusCode.UNAUTHENTICATED),
        "no bucket named": (hospital, "", grpc.StatusCode.INVALID_ARGUMENT),
    }
    for case, (profile, bucket, code) in refused.items():
        with pytest.raises(grpc.RpcError) as info:
            _get_chunk(mesh, profile, holder, name, bucket)
        assert info.value.code() == code, (case, info.value.details())


def test_the_chunk_key_is_refused_to_another_tenant(mesh, tenants):
    hospital, housing = tenants
    with Client(profile=hospital) as h:
        h.create_bucket("hospital-private", POLICY)
    assert len(_chunk_key(mesh, hospital, "hospital-private")) == 32
    with pytest.raises(grpc.RpcError) as info:
        _chunk_key(mesh, housing, "hospital-private")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with Client(profile=housing) as o, pytest.raises(PermissionDenied):
        o.get_object("hospital-private", "x").read()


def _plant(mesh, hospital, bucket: str, key: str, frame: bytes, size: int, etag: str) -> None:
    """As a node: store `frame` on its replicas and point bucket/key's manifest at it alone."""
    digest = read_frame_header(frame).digest
    table = partition_table(mesh.layout, POLICY)
    for node_id in table.replicas(chunk_partition(digest, table.bits)):
        with _as_node(mesh, node_id) as ch:
            put = ch.unary_unary(bulk.PUT_CHUNK, request_serializer=None, response_deserializer=None)
            put(frame, timeout=10, metadata=((bulk.POLICY_KEY, POLICY),))
    owners = table.replicas(bucket_partition(bucket, table.bits))
    real = newest_manifest(mesh, owners, bucket, key)
    forged = pb.Manifest()
    forged.CopyFrom(real)
    del forged.chunks[:]
    forged.chunks.add(digest=digest, length=size)
    forged.size, forged.etag, forged.version = size, etag, real.version + 1
    for node_id in owners:
        with _as_node(mesh, node_id) as ch:
            assert rpc.ReplicaStub(ch).PutManifest(pb.PutManifestRequest(manifest=forged), timeout=10).applied


def test_the_sdk_refuses_a_keyed_chunk_whose_content_does_not_match_its_name(mesh, tenants):
    hospital, _ = tenants
    with Client(profile=hospital) as h:
        h.create_bucket("hospital-tamper", POLICY)
        h.put_object("hospital-tamper", "report.pdf", os.urandom(2 * CHUNK))
        key = _chunk_key(mesh, hospital, "hospital-tamper")
        genuine, other = os.urandom(1000), os.urandom(1000)
        # a well-formed keyed frame: nodes (who have no key) accept it; its content is not its name's
        forged = encode_frame(other, key=key, digest=chunk_digest(genuine, key))
        verify_frame(forged)
        _plant(mesh, hospital, "hospital-tamper", "report.pdf", forged, 1000, chunk_digest(other).hex())
        with pytest.raises(IntegrityError, match="no copy passed verification"):
            h.get_object("hospital-tamper", "report.pdf", range=(0, 10)).read()
        with pytest.raises(IntegrityError):
            h.get_object("hospital-tamper", "report.pdf").read()


def test_an_unkeyed_chunk_written_before_names_were_keyed_still_reads(mesh, tenants):
    hospital, _ = tenants
    old = os.urandom(5000)
    with Client(profile=hospital) as h:
        h.create_bucket("hospital-archive", POLICY)
        h.put_object("hospital-archive", "old.bin", os.urandom(2 * CHUNK))
        _plant(mesh, hospital, "hospital-archive", "old.bin", encode_frame(old), len(old), chunk_digest(old).hex())
        assert h.object_chunks("hospital-archive", "old.bin") == [(chunk_digest(old), len(old))]
        assert h.get_object("hospital-archive", "old.bin").read() == old
