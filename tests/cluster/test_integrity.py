"""Whole-object integrity on real nodes: a manifest pointing at another object's chunks is an
IntegrityError, never data, even though every chunk it names is genuine and verifies."""

from __future__ import annotations

import os
import re

import grpc
import pytest

from maillage.client import Client, IntegrityError
from maillage.client.admin import collect_audit, reconcile
from maillage.placement import bucket_partition, partition_table
from maillage.proto import pb, rpc
from maillage.proto.channels import open_blocking_channel
from maillage.proto.trust.identity import TlsIdentity
from maillage.storage import BucketRecord, MetaStore

from .conftest import CHUNK
from .helpers import newest_manifest


def _as_node(mesh, node_id: str):
    """A Replica stub on `node_id`, calling as paris-1 (a node certificate: PutManifest is node-only)."""
    tls = TlsIdentity.load_node(mesh.trust_dir("paris-1"))
    channel = open_blocking_channel(mesh.address(node_id), tls=tls, peer=node_id)
    return channel, rpc.ReplicaStub(channel)


def test_a_manifest_swapped_to_another_objects_chunks_reads_as_an_integrity_error(mesh):
    size = 3 * CHUNK
    original, other = os.urandom(size), os.urandom(size)
    with Client(profile=mesh.profile) as c:
        c.create_bucket("forgery", "france-only")
        c.put_object("forgery", "report.pdf", original)
        c.put_object("forgery", "decoy.pdf", other)
        layout = c.layout()
        table = partition_table(layout, "france-only")
        owners = table.replicas(bucket_partition("forgery", table.bits))
        real = newest_manifest(mesh, owners, "forgery", "report.pdf")
        decoy = newest_manifest(mesh, owners, "forgery", "decoy.pdf")
        forged = pb.Manifest()
        forged.CopyFrom(real)
        del forged.chunks[:]
        forged.chunks.extend(decoy.chunks)          # genuine chunks, of another object
        forged.version = real.version + 1
        for node_id in owners:
            channel, stub = _as_node(mesh, node_id)
            with channel:
                assert stub.PutManifest(pb.PutManifestRequest(manifest=forged), timeout=10).applied
        with pytest.raises(IntegrityError, match="do not match the object's BLAKE3"):
            c.get_object("forgery", "report.pdf").read()
        with pytest.raises(IntegrityError):
            c.download_file("forgery", "report.pdf", mesh.base_dir / "report.pdf")
        assert not (mesh.base_dir / "report.pdf").exists(), "no half-verified file is left behind"
        # a range read verifies each chunk it touches: these are genuine, so the range is served
        assert c.get_object("forgery", "report.pdf", range=(0, 10)).read() == other[:10]
        assert c.get_object("forgery", "decoy.pdf").read() == other


def test_the_audit_reads_every_nodes_own_bucket_records_and_reports_a_forged_rebind(fresh_mesh):
    mesh = fresh_mesh
    mesh.kill("lyon-1")                      # misses the creation: holds no record of the bucket
    with Client(profile=mesh.profile) as c:
        c.create_bucket("records", "france-only")
        c.put_object("records", "a.txt", b"x" * 100)
    forged = pb.Bucket(name="records", policy="eu-wide", owner="demo", generation="f" * 32, created=1)
    # a node certificate cannot teach the forged record: the true one is confirmed by French nodes
    channel, stub = _as_node(mesh, "munich-1")
    with channel, pytest.raises(grpc.RpcError) as refused:
        stub.PutBucketRecord(forged, timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value
    # ... but whoever holds lyon-1's disk can write it there (a compromised French site)
    with MetaStore(mesh.data_dir("lyon-1") / "meta") as store:
        store.put_bucket(BucketRecord(name="records", policy="eu-wide", owner="demo",
                                      generation="f" * 32, created=1))
    mesh.start_node("lyon-1")
    report = collect_audit(mesh.admin_profile)
    rebinds = [v for v in report.violations if "nodes disagree" in v]
    # lyon-1 alone holds the forged record: munich-1, which has no record of the bucket, hears the
    # real one from the French nodes too and learns neither
    holders = re.search(r"(?:\(|; )([^;:()]*): policy eu-wide", rebinds[0]) if rebinds else None
    assert holders and holders.group(1).split(", ") == ["lyon-1"] and "policy france-only" in rebinds[0], rebinds
    assert not report.ok


def test_reconcile_takes_the_majority_record_and_names_every_dissenting_node():
    records = {"a": {"b1": ("france-only", "g1")}, "b": {"b1": ("france-only", "g1")},
               "c": {"b1": ("eu-wide", "g2"), "b2": ("eu-wide", "g3")}}
    policies, disagreements = reconcile(records)
    assert policies == {"b1": "france-only", "b2": "eu-wide"}
    assert len(disagreements) == 1 and "a, b: policy france-only generation g1" in disagreements[0]
    assert "c: policy eu-wide generation g2" in disagreements[0]
    assert reconcile({"a": {"b1": ("p", "g")}, "b": {"b1": ("p", "g")}})[1] == []
