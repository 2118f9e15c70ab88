"""Reading what each node really stored, straight from the node (not from placement)."""

from __future__ import annotations

import grpc

from maillage.proto import pb, rpc
from maillage.proto.channels import open_blocking_channel


def inventory(address: str, bucket: str = "") -> pb.InventoryReply:
    with open_blocking_channel(address) as channel:
        return rpc.ReplicaStub(channel).Inventory(pb.InventoryRequest(bucket=bucket), timeout=30)


def holders(mesh, bucket: str, key: str) -> set[str]:
    """Sites whose node stores the manifest of bucket/key."""
    sites = set()
    for node in mesh.layout.nodes:
        if node.id in mesh.processes and mesh.processes[node.id].poll() is None:
            inv = inventory(node.address, bucket)
            if any(key in b.keys for b in inv.buckets):
                sites.add(node.site)
    return sites


def chunk_holders(mesh, digest: bytes) -> set[str]:
    return {n.site for n in mesh.layout.nodes if digest in set(inventory(n.address).all_chunks)}


def manifest_digests(mesh, bucket: str, key: str) -> list[bytes]:
    """The chunk digests of bucket/key, from the first node that holds its manifest."""
    for node in mesh.layout.nodes:
        try:
            with open_blocking_channel(node.address) as ch:
                reply = rpc.ReplicaStub(ch).GetManifest(pb.GetManifestRequest(bucket=bucket, key=key), timeout=5)
        except grpc.RpcError:
            continue
        if reply.found:
            return [c.digest for c in reply.manifest.chunks]
    raise AssertionError(f"no node has a manifest for {bucket}/{key}")


def node_status(mesh, node_id: str) -> pb.NodeStatus:
    with open_blocking_channel(mesh.address(node_id)) as ch:
        return rpc.ClusterStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)


def files_containing(root, needle: bytes) -> list[str]:
    """Every file under `root` whose bytes contain `needle` (RocksDB files, chunks, temp files)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(str(path))
    return hits
