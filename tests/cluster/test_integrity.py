"""Whole-object integrity on real nodes: a manifest pointing at another object's chunks is an
IntegrityError, never data, even though every chunk it names is genuine and verifies."""

from __future__ import annotations

import os

import pytest

from maillage.client import Client, IntegrityError
from maillage.placement import bucket_partition, partition_table
from maillage.proto import pb, rpc
from maillage.proto.channels import open_blocking_channel
from maillage.proto.identity import TlsIdentity

from .conftest import CHUNK


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
        channel, stub = _as_node(mesh, owners[0])
        with channel:
            real = stub.GetManifest(pb.GetManifestRequest(bucket="forgery", key="report.pdf"), timeout=10).manifest
            decoy = stub.GetManifest(pb.GetManifestRequest(bucket="forgery", key="decoy.pdf"), timeout=10).manifest
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
