"""Reading what each node really stored, straight from the node (not from placement).

Calls go over mutual TLS with the mesh's client certificate and are signed with its admin key (the
node lets an admin key read inventories, manifests and status, for audits).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from maillage.client._trust import method_path, unary_method
from maillage.proto import pb, rpc
from maillage.proto.channels import open_blocking_channel
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import TlsIdentity
from maillage.storage import ChunkStore, DataKeys


@contextmanager
def channel(mesh, address: str, peer: str | None = None) -> Iterator[grpc.Channel]:
    """A blocking channel to a node of `mesh`, with the mesh's client certificate."""
    with open_blocking_channel(address, tls=TlsIdentity.load_client(mesh.cluster_dir), peer=peer) as ch:
        yield ch


def signed(profile, path: str, target: str, body: bytes) -> tuple[tuple[str, str], ...]:
    """Metadata authenticating one call of gRPC method `path` to node `target` with request bytes
    `body`, with `profile`'s key."""
    key = profile.credentials
    return requestauth.sign(path, key.key_id, key.secret, target=target, body=body)


def signed_call(ch: grpc.Channel, profile, service: str, method: str, request: Any, *, target: str,
                timeout: float = 5.0) -> Any:
    """maillage.v1.<service>/<method> on `ch`, its request serialized once and signed for node `target`."""
    body = request.SerializeToString()
    return unary_method(ch, service, method)(body, timeout=timeout,
                                             metadata=signed(profile, method_path(service, method), target, body))


def node_at(mesh, address: str) -> str:
    return next(n.id for n in mesh.layout.nodes if n.address == address)


def admin_call(mesh, address: str, service: str, method: str, request: Any, *, timeout: float = 5.0) -> Any:
    """One call signed with the mesh's admin key for the node at `address`; failures leave as grpc.RpcError."""
    node_id = node_at(mesh, address)
    with channel(mesh, address, peer=node_id) as ch:
        return signed_call(ch, mesh.admin_profile, service, method, request, target=node_id, timeout=timeout)


def inventory(mesh, address: str, bucket: str = "") -> pb.InventoryReply:
    return admin_call(mesh, address, "Replica", "Inventory", pb.InventoryRequest(bucket=bucket), timeout=30)


def holders(mesh, bucket: str, key: str) -> set[str]:
    """Sites whose node stores the manifest of bucket/key."""
    sites = set()
    for node in mesh.layout.nodes:
        if node.id in mesh.processes and mesh.processes[node.id].poll() is None:
            inv = inventory(mesh, node.address, bucket)
            if any(key in b.keys for b in inv.buckets):
                sites.add(node.site)
    return sites


def chunk_holders(mesh, digest: bytes) -> set[str]:
    return {n.site for n in mesh.layout.nodes if digest in set(inventory(mesh, n.address).all_chunks)}


def manifest_digests(mesh, bucket: str, key: str) -> list[bytes]:
    """The chunk digests of bucket/key, from the first node that holds its manifest."""
    for node in mesh.layout.nodes:
        try:
            reply = admin_call(mesh, node.address, "Replica", "GetManifest",
                               pb.GetManifestRequest(bucket=bucket, key=key))
        except grpc.RpcError:
            continue
        if reply.found:
            return [c.digest for c in reply.manifest.chunks]
    raise AssertionError(f"no node has a manifest for {bucket}/{key}")


def node_status(mesh, node_id: str) -> pb.NodeStatus:
    return admin_call(mesh, mesh.address(node_id), "Cluster", "GetStatus", pb.GetStatusRequest())


def files_containing(root, needle: bytes) -> list[str]:
    """Every file under `root` whose bytes contain `needle` (RocksDB files, chunks, temp files)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(str(path))
    return hits


def sealing_scopes(mesh, node_id: str, digests) -> dict[bytes, tuple[str, str] | None]:
    """For each of `digests` the node stores: the scope ("tenant" or "policy", name) of the data
    key its chunk file names, read with the node's own keys (read only, the node may be running)."""
    keys = DataKeys.read_only(mesh.data_dir(node_id) / "meta", mesh.trust_dir(node_id) / "data.key")
    out = {}
    for digest in digests:
        path = ChunkStore.path_in(mesh.data_dir(node_id) / "chunks", digest)
        if path.exists():
            out[digest] = keys.scope_of(path.read_bytes()[5:13])  # magic, format, then the key id
    return out


def newest_manifest(mesh, owners, bucket: str, key: str) -> pb.Manifest:
    """The newest manifest of bucket/key any of `owners` holds, read as a node (paris-1's
    certificate): a write is acknowledged once a quorum of the owners has it, not all of them."""
    tls = TlsIdentity.load_node(mesh.trust_dir("paris-1"))
    held = []
    for node_id in owners:
        with open_blocking_channel(mesh.address(node_id), tls=tls, peer=node_id) as channel:
            held.append(rpc.ReplicaStub(channel).GetManifest(pb.GetManifestRequest(bucket=bucket, key=key),
                                                             timeout=10).manifest)
    found = [m for m in held if m.bucket]
    assert found, f"no owner of {bucket}/{key} holds its manifest"
    return max(found, key=lambda m: m.version)
