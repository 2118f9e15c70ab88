"""A hostile node of the layout, or someone holding the cluster's CA key, against real nodes (real TLS).

Issue 22, items 5 and 6:

* a staged layout change (signed by the admin, in its own domain) offered as an applied layout, by
  PushLayout or handed out through gossip by a hostile node, is never adopted;
* a node certificate made with the CA key for an existing node id but not pinned by the signed
  layout is refused on node methods, and after a rotation (new certificate, a layout pinning it
  applied) the old certificate is refused too.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from maillage.client import Client
from maillage.client._trust import unary_method
from maillage.placement import Layout, Policy, changes, format_layout
from maillage.proto import pb, rpc
from maillage.proto.channels import open_blocking_channel
from maillage.proto.trust.identity import TlsIdentity
from maillage.testing.forged import forge_node_certificate
from maillage.testing.localmesh import LocalMesh
from maillage.testing.waiting import eventually

from .helpers import admin_call

VICTIM = "lyon-1"
HOSTILE = "munich-1"   # a German node of the layout, holding its own certificate


def current(mesh: LocalMesh) -> Layout:
    with mesh.admin() as admin:
        return admin.layout


def version_of(mesh: LocalMesh, node_id: str) -> int:
    return admin_call(mesh, mesh.address(node_id), "Cluster", "GetInfo", pb.GetInfoRequest()).layout_version


def staged_widening(mesh: LocalMesh, base: Layout) -> pb.LayoutDoc:
    """What `maillage layout policy-set france-only --allow eu` stages against `base`, signed as the
    admin tooling signs it (kind "staged-layout", the version it was prepared against): its
    (version, text) is exactly what an applied layout of that version would be."""
    policies = tuple(Policy("france-only", (("eu",),), 2) if p.name == "france-only" else p for p in base.policies)
    text = format_layout(dataclasses.replace(base, policies=policies))
    return pb.LayoutDoc(version=base.version, text=text,
                        signature=mesh.signer.sign(base.version, text, kind="staged-layout"))


def test_a_staged_change_pushed_as_a_layout_is_never_adopted(mesh: LocalMesh) -> None:
    now = current(mesh)
    ahead = changes.bump(now, now.version + 1)   # staged against a version the nodes do not have yet
    doc = staged_widening(mesh, ahead)
    for node in now.nodes:
        with pytest.raises(grpc.RpcError) as info:
            admin_call(mesh, node.address, "Cluster", "PushLayout", doc)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value.details()
        assert "does not verify" in info.value.details()
        assert version_of(mesh, node.id) == now.version
    # The reverse: an applied layout is no staged change (StageLayout checks the kind too).
    text = format_layout(now)
    applied = pb.LayoutDoc(version=now.version, text=text, signature=mesh.signer.sign(now.version, text, kind="layout"))
    with pytest.raises(grpc.RpcError) as info:
        admin_call(mesh, mesh.address(VICTIM), "Cluster", "StageLayout", applied)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The real next version is still taken.
    with mesh.admin() as admin:
        adopted, problems = admin.push(ahead)
    assert not problems and adopted == len(now.nodes)
    assert {version_of(mesh, n.id) for n in now.nodes} == {ahead.version}


def node_call(mesh: LocalMesh, identity: TlsIdentity, target: str, method: str) -> grpc.RpcError | None:
    """A node method called on `target` with `identity`'s certificate: None if it passed, else the error."""
    request = {"Heartbeat": pb.HeartbeatRequest(node_id="paris-1"), "GetAccess": pb.GetAccessRequest(),
               "ListBucketRecords": pb.ListBucketRecordsRequest()}[method]
    service = "Replica" if method == "ListBucketRecords" else "Cluster"
    with open_blocking_channel(mesh.address(target), tls=identity, peer=target) as channel:
        try:
            unary_method(channel, service, method)(request.SerializeToString(), timeout=10)
        except grpc.RpcError as err:
            return err
    return None


def test_a_certificate_made_with_the_ca_key_but_not_pinned_is_refused(mesh: LocalMesh, tmp_path) -> None:
    layout = current(mesh)
    assert layout.pins_keys                                  # the mesh pins every node's certificate key
    forged = TlsIdentity.load_node(forge_node_certificate(mesh.cluster_dir, "paris-1", tmp_path / "forged").directory)
    real = TlsIdentity.load_node(mesh.trust_dir("paris-1"))
    for target in ("toulouse-1", "munich-1"):
        for method in ("Heartbeat", "GetAccess", "ListBucketRecords"):
            assert node_call(mesh, real, target, method) is None, (target, method)
            err = node_call(mesh, forged, target, method)
            assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, (target, method, err)
            assert "node 'paris-1'" in err.details() and f"layout v{layout.version} pins" in err.details()
    bare = forge_node_certificate(mesh.cluster_dir, "paris-1", tmp_path / "bare", usages=None)
    err = node_call(mesh, TlsIdentity.load_node(bare.directory), "toulouse-1", "Heartbeat")
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "serverAuth, clientAuth" in err.details()


def test_after_a_rotation_the_old_certificate_is_refused(mesh: LocalMesh, tmp_path) -> None:
    old_dir = tmp_path / "old-paris-1"
    shutil.copytree(mesh.trust_dir("paris-1"), old_dir)
    old = TlsIdentity.load_node(old_dir)
    new_key = mesh.issue_certificate("paris-1")          # `maillage cluster node-cert paris-1`
    with mesh.admin() as admin:                          # `maillage layout pin` + `apply`
        rotated = changes.bump(admin.layout, admin.layout.version + 1)
        adopted, problems = admin.push(rotated)
    assert not problems and adopted == len(rotated.nodes)
    assert current(mesh).node("paris-1").cert_key == new_key
    mesh.stop_node("paris-1")
    mesh.start_node("paris-1")                           # restarted with its new certificate
    new = TlsIdentity.load_node(mesh.trust_dir("paris-1"))
    for target in ("toulouse-1", "lyon-1"):
        err = node_call(mesh, old, target, "Heartbeat")
        assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, target
        assert "a rotation replaced" in err.details()
        assert node_call(mesh, new, target, "Heartbeat") is None
    # the rotated node works with its peers: a write through it reaches France-only replicas
    with Client(profile=dataclasses.replace(mesh.profile, endpoints=(mesh.address("paris-1"),))) as client:
        client.create_bucket("rotated", "france-only")
        client.put_object("rotated", "k", b"after the rotation")
        assert client.get_object("rotated", "k").read() == b"after the rotation"


class _HostilePeer(rpc.ClusterServicer):
    """munich-1's port, answered by the attacker with munich-1's own certificate: its heartbeat
    says it has a newer layout, and the layout it hands out is the admin's staged change."""

    def __init__(self, doc: pb.LayoutDoc) -> None:
        self.doc = doc
        self.served = threading.Event()

    def Heartbeat(self, request, context):
        return pb.HeartbeatReply(node_id=HOSTILE, layout_version=self.doc.version)

    def GetLayout(self, request, context):
        self.served.set()
        return self.doc


def test_a_staged_change_handed_out_by_gossip_is_never_adopted(mesh: LocalMesh) -> None:
    now = current(mesh)
    doc = staged_widening(mesh, changes.bump(now, now.version + 1))
    identity = TlsIdentity.load_node(mesh.trust_dir(HOSTILE))
    mesh.kill(HOSTILE)                               # the attacker takes over munich-1's port
    peer = _HostilePeer(doc)
    server = grpc.server(ThreadPoolExecutor(4))
    rpc.add_ClusterServicer_to_server(peer, server)
    assert server.add_secure_port(mesh.address(HOSTILE), identity.server_credentials())
    server.start()
    try:
        with open_blocking_channel(mesh.address(VICTIM), tls=identity, peer=VICTIM) as channel:
            rpc.ClusterStub(channel).Heartbeat(pb.HeartbeatRequest(node_id=HOSTILE, layout_version=doc.version),
                                               timeout=5)
        assert peer.served.wait(10), "the victim never fetched the layout the heartbeat announced"
        eventually(lambda: "layout from munich-1 refused" in mesh.tail_log(VICTIM, 200),
                   timeout=10, what="the victim refusing the staged change")
        assert version_of(mesh, VICTIM) == now.version
    finally:
        server.stop(0).wait()
        mesh.start_node(HOSTILE)                     # the real munich-1 back, for any test after this one
