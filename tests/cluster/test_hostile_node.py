"""A hostile node of the layout, against a real mesh: it holds a German node's own certificate and
uses it to widen, read, delete or redirect a France-only bucket (issue 22). Each attack must fail,
and every honest write stay inside France (what each node reports it stores).

The mesh is the demo's: four French sites, two German ones (munich-1, nuremberg-1). The attacker
speaks as munich-1 from the test process while the real munich-1 runs too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import grpc
import pytest

from maillage.client import Client
from maillage.client._trust import method_path, reply_type
from maillage.node.rpc.gate import REFUSAL_PREFIXES
from maillage.node.service.rules import GRPC_METHODS, OPERATIONS
from maillage.proto import bulk, frame, pb
from maillage.proto.channels import open_blocking_channel
from maillage.proto.reasons import Reason, reason_of
from maillage.proto.trust.identity import ClusterDir, TlsIdentity, issue_node_certificate
from maillage.testing.localmesh import LocalMesh, make_layout

from .helpers import inventory

FRENCH = ("paris-1", "paris-2", "toulouse-1", "montpellier-1")
GERMAN = ("munich-1", "nuremberg-1")
BUCKET = "france-data"
ATTACKER = "munich-1"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Iterator[LocalMesh]:
    with LocalMesh(make_layout(), tmp_path_factory.mktemp("hostile-node"), s3=True) as m:
        with Client(profile=m.profile) as c:
            c.create_bucket(BUCKET, "france-only")
            c.put_object(BUCKET, "before", b"written before any attack " * 20_000)  # several chunks
        yield m


def node_call(mesh: LocalMesh, as_node: str | TlsIdentity, target: str, method: str, request: Any,
              *, raw: bytes | None = None, metadata: tuple = ()) -> Any:
    """`method` (a gRPC path) on `target` with a node certificate (a node id of the mesh, or an identity)."""
    tls = TlsIdentity.load_node(mesh.trust_dir(as_node)) if isinstance(as_node, str) else as_node
    service, name = method.rsplit("/", 1)
    service = service.rsplit(".", 1)[-1]
    with open_blocking_channel(mesh.address(target), tls=tls, peer=target) as ch:
        if raw is not None:
            return ch.unary_unary(method)(raw, timeout=15, metadata=metadata)
        call = ch.unary_unary(method, request_serializer=None,
                              response_deserializer=reply_type(service, name).FromString)
        return call(request.SerializeToString(), timeout=15, metadata=metadata)


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def record_of(mesh: LocalMesh, target: str | None = None) -> pb.Bucket:
    """The bucket's record as `target` (default: a French node holding it) answers any node."""
    target = target or sorted(_record_holders(mesh))[0]
    reply = node_call(mesh, ATTACKER, target, method_path("Replica", "GetBucketRecord"),
                      pb.GetBucketRecordRequest(name=BUCKET))
    assert reply.found
    return reply.bucket


def german_holdings(mesh: LocalMesh) -> dict[str, Any]:
    """What each German node reports it stores of the bucket: index keys, and its record."""
    out = {}
    for node in GERMAN:
        inv = inventory(mesh, mesh.address(node))
        keys = [k for b in inv.buckets if b.bucket == BUCKET for k in b.keys]
        held = node_call(mesh, node, node, method_path("Replica", "GetBucketRecord"),
                         pb.GetBucketRecordRequest(name=BUCKET))
        out[node] = (keys, held.bucket.policy if held.found else None)
    return out


def honest_writes_through_german_doors(mesh: LocalMesh, tag: str) -> list[str]:
    """The tenant's ordinary S3 PUTs through each German node's door, and SDK PUTs: the keys
    acknowledged (a refusal is fine; data placed in Germany is not)."""
    acknowledged = []
    for node in GERMAN:
        key = mesh.profile.credentials
        s3 = boto3.client("s3", **mesh.s3_client_kwargs(node), aws_access_key_id=key.key_id,
                          aws_secret_access_key=key.secret, region_name="us-east-1")
        key = f"{tag}-via-{node}"
        try:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"honest bytes " * 1000)
            acknowledged.append(key)
        except botocore.exceptions.ClientError:
            pass
    with Client(profile=mesh.profile) as c:
        try:
            c.put_object(BUCKET, f"{tag}-sdk", b"honest sdk bytes " * 1000)
            acknowledged.append(f"{tag}-sdk")
        except Exception:  # noqa: BLE001 - a refusal of any kind keeps the bytes out of Germany
            pass
    return acknowledged


def test_a_forged_eu_wide_record_pushed_to_every_german_node_is_refused(mesh: LocalMesh) -> None:
    honest = record_of(mesh)
    forged = pb.Bucket()
    forged.CopyFrom(honest)
    forged.policy = "eu-wide"   # same name, generation, owner and creation: only the policy widened
    for victim in GERMAN:
        err = refusal(lambda v=victim: node_call(mesh, ATTACKER, v, method_path("Replica", "PutBucketRecord"),
                                                 forged))
        assert reason_of(err) is Reason.BUCKET_DISPUTED, (victim, err.code(), err.details())
    # Pushed onto French nodes too: they hold the real record and are outside nothing; the
    # attacker is outside france-only and inside eu-wide, and the held record wins.
    err = refusal(lambda: node_call(mesh, ATTACKER, "paris-2", method_path("Replica", "PutBucketRecord"), forged))
    assert err.code() in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION)

    acknowledged = honest_writes_through_german_doors(mesh, "all-up")
    assert acknowledged, "no honest write went through while every French node was up"
    assert german_holdings(mesh) == {node: ([], None) for node in GERMAN}
    with Client(profile=mesh.profile) as c:
        assert c.head_bucket(BUCKET).policy == "france-only"
        for key in acknowledged:
            assert c.get_object(BUCKET, key).read().startswith(b"honest")


def test_a_german_node_cannot_read_france_only_chunks_listings_or_inventories(mesh: LocalMesh) -> None:
    digest = _first_digest(mesh)
    french = sorted(_manifest_holders(mesh))[0]   # holds the record, the index and the manifest
    holder = sorted(_chunk_holders(mesh, digest))[0]
    reader = next(n for n in FRENCH if n != holder)
    # a French node reads it (the control), a German one gets NOT_FOUND as if it were not there
    assert node_call(mesh, reader, holder, bulk.GET_CHUNK, None, raw=bulk.chunk_request(digest))
    err = refusal(lambda: node_call(mesh, ATTACKER, holder, bulk.GET_CHUNK, None, raw=bulk.chunk_request(digest)))
    assert err.code() is grpc.StatusCode.NOT_FOUND
    for method, request in [
        ("ListIndex", pb.ListIndexRequest(bucket=BUCKET, limit=100)),
        ("GetManifest", pb.GetManifestRequest(bucket=BUCKET, key="before")),
        ("Inventory", pb.InventoryRequest(bucket=BUCKET)),
        ("Inventory", pb.InventoryRequest()),
        ("ReferencedChunks", pb.ReferencedChunksRequest(policy="france-only")),
        ("HasChunks", pb.HasChunksRequest(digests=[digest], policy="france-only")),
    ]:
        err = refusal(lambda m=method, r=request: node_call(mesh, ATTACKER, french, method_path("Replica", m), r))
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED, (method, err.code(), err.details())


def test_a_german_node_cannot_delete_a_france_only_bucket(mesh: LocalMesh) -> None:
    honest = record_of(mesh)
    tombstone = pb.BucketTombstone(name=BUCKET, generation=honest.generation, policy=honest.policy, deleted=1 << 62)
    for target in FRENCH:
        err = refusal(lambda t=target: node_call(mesh, ATTACKER, t, method_path("Replica", "DeleteBucketRecord"),
                                                 pb.DeleteBucketRecordRequest(name=BUCKET, tombstone=tombstone)))
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED, (target, err.details())
    # a tombstone claiming the bucket was eu-wide (which munich-1 is inside) is refused too
    tombstone.policy = "eu-wide"
    holder = sorted(_record_holders(mesh))[0]
    err = refusal(lambda: node_call(mesh, ATTACKER, holder, method_path("Replica", "DeleteBucketRecord"),
                                    pb.DeleteBucketRecordRequest(name=BUCKET, tombstone=tombstone)))
    assert err.code() is grpc.StatusCode.ALREADY_EXISTS, err.details()
    with Client(profile=mesh.profile) as c:
        assert c.get_object(BUCKET, "before").read().startswith(b"written before")


# ----- every node-plane method, with a node of each territory, against the rule table ---------------

@dataclasses.dataclass(frozen=True)
class Probe:
    """A request naming France-only data, for one node-plane method."""
    method: str
    request: Any = None
    raw: bytes | None = None
    metadata: tuple = ()


def probes(mesh: LocalMesh, caller: str) -> list[Probe]:
    honest = record_of(mesh)
    m = _manifest(mesh)
    digest = m.chunks[0].digest
    plain = b"a probe chunk"
    probe_frame = frame.encode_frame(plain)
    probe_manifest = pb.Manifest()
    probe_manifest.CopyFrom(m)
    probe_manifest.key = "probe"
    r = method_path("Replica", "")
    c = method_path("Cluster", "")
    return [
        Probe(c + "GetInfo", pb.GetInfoRequest()),
        Probe(c + "GetLayout", pb.GetLayoutRequest()),
        Probe(c + "GetAccess", pb.GetAccessRequest()),
        Probe(c + "Heartbeat", pb.HeartbeatRequest(node_id=caller)),
        Probe(r + "HasChunks", pb.HasChunksRequest(digests=[digest], policy="france-only")),
        Probe(r + "PutManifest", pb.PutManifestRequest(manifest=probe_manifest)),
        Probe(r + "GetManifest", pb.GetManifestRequest(bucket=BUCKET, key="before")),
        Probe(r + "ListIndex", pb.ListIndexRequest(bucket=BUCKET, limit=10)),
        Probe(r + "PutBucketRecord", honest),
        Probe(r + "GetBucketRecord", pb.GetBucketRecordRequest(name=BUCKET)),
        Probe(r + "DeleteBucketRecord", pb.DeleteBucketRecordRequest(name=BUCKET, tombstone=pb.BucketTombstone(
            name=BUCKET, generation="0" * 32, policy="france-only", deleted=1))),  # another generation: harmless
        Probe(r + "ListBucketRecords", pb.ListBucketRecordsRequest()),
        Probe(r + "SyncSummaries", pb.SyncSummaryRequest(groups=[pb.SyncGroup(policy="france-only", partition=0)])),
        Probe(r + "SyncListing", pb.SyncListingRequest(group=pb.SyncGroup(
            policy="france-only", bucket=BUCKET, generation=honest.generation))),
        Probe(r + "ReferencedChunks", pb.ReferencedChunksRequest(policy="france-only")),
        Probe(bulk.PUT_CHUNK, raw=probe_frame, metadata=((bulk.POLICY_KEY, "france-only"),)),
        Probe(bulk.GET_CHUNK, raw=bulk.chunk_request(digest)),
    ]


NODE_METHODS = sorted(m for m, op in GRPC_METHODS.items() if OPERATIONS[op].nodes)


def test_the_probes_cover_every_method_open_to_nodes(mesh: LocalMesh) -> None:
    assert sorted(p.method for p in probes(mesh, "paris-1")) == NODE_METHODS


@pytest.mark.parametrize("territory", ["inside", "outside", "not in layout"])
def test_every_node_plane_method_answers_each_territory_as_the_rule_table_says(
        mesh: LocalMesh, territory: str, tmp_path_factory) -> None:
    if territory == "not in layout":
        ghost = issue_node_certificate(ClusterDir.at(mesh.cluster_dir), "ghost-1",
                                       tmp_path_factory.mktemp("ghost") / "ghost")
        who: str | TlsIdentity = TlsIdentity.load_node(ghost.directory)
        caller = "ghost-1"
    else:
        who = caller = "toulouse-1" if territory == "inside" else ATTACKER
    # French nodes other than the caller: one holding the chunk (chunk reads), one holding the bucket's
    # record (every other method: records rest on the name's owners only, not on every French node)
    chunk_target = next(n for n in FRENCH if n != caller and n in _chunk_holders(mesh, _first_digest(mesh)))
    record_target = next(n for n in FRENCH if n != caller and n in _record_holders(mesh))
    for probe in probes(mesh, caller):
        rule = OPERATIONS[GRPC_METHODS[probe.method]]
        target = chunk_target if probe.method == bulk.GET_CHUNK else record_target
        try:
            node_call(mesh, who, target, probe.method, probe.request, raw=probe.raw, metadata=probe.metadata)
            got = grpc.StatusCode.OK
            words = ""
        except grpc.RpcError as err:
            got, words = err.code(), err.details() or ""
        if territory == "not in layout":
            assert got is grpc.StatusCode.PERMISSION_DENIED and words.startswith(REFUSAL_PREFIXES[got]), \
                (probe.method, got, words)
        elif territory == "inside" or rule.territory is None:
            assert got is grpc.StatusCode.OK, (territory, probe.method, got, words)
        elif rule.territory == "chunk":
            assert got is grpc.StatusCode.NOT_FOUND, (probe.method, got, words)
        else:
            assert got is grpc.StatusCode.PERMISSION_DENIED and "outside policy" in words, (probe.method, got, words)


def test_all_but_one_french_node_down_a_forged_record_is_still_refused(mesh: LocalMesh) -> None:
    honest = record_of(mesh)
    forged = pb.Bucket()
    forged.CopyFrom(honest)
    forged.policy = "eu-wide"
    kept_up = sorted(_record_holders(mesh))[-1]   # the one French node left up holds the true record
    down = [n for n in FRENCH if n != kept_up]
    for node in down:
        mesh.stop_node(node)
    try:
        for victim in GERMAN:
            err = refusal(lambda v=victim: node_call(mesh, ATTACKER, v, method_path("Replica", "PutBucketRecord"),
                                                     forged))
            assert reason_of(err) is Reason.BUCKET_DISPUTED, (victim, err.code(), err.details())
        honest_writes_through_german_doors(mesh, "one-up")
        assert german_holdings(mesh) == {node: ([], None) for node in GERMAN}
    finally:
        for node in down:
            mesh.start_node(node)


def _manifest_holders(mesh: LocalMesh) -> dict[str, pb.Manifest]:
    """French node -> its manifest of "before", for the nodes holding it (placement decides which)."""
    held = {}
    for n in FRENCH:
        reply = node_call(mesh, n, n, method_path("Replica", "GetManifest"),
                          pb.GetManifestRequest(bucket=BUCKET, key="before"))
        if reply.found:
            held[n] = reply.manifest
    assert held, "no French node holds the manifest of 'before'"
    return held


def _manifest(mesh: LocalMesh) -> pb.Manifest:
    return next(iter(_manifest_holders(mesh).values()))


def _first_digest(mesh: LocalMesh) -> bytes:
    return _manifest(mesh).chunks[0].digest


def _record_holders(mesh: LocalMesh) -> set[str]:
    return {n for n in FRENCH if node_call(mesh, n, n, method_path("Replica", "GetBucketRecord"),
                                           pb.GetBucketRecordRequest(name=BUCKET)).found}


def _chunk_holders(mesh: LocalMesh, digest: bytes) -> set[str]:
    return {n for n in FRENCH if digest in set(inventory(mesh, mesh.address(n)).all_chunks)}
