"""The benchmarks' plaintext mesh (`--insecure-plaintext`: no TLS, no identities; the cost
comparison of `maillage.benchmarks.throughput`): a GET whose first chunk the coordinator reads from
a peer works there too. The peer cannot tell a node from a client on that mesh, so its GetChunk
without a bucket is served as a peer's; on every other mesh a client must name the bucket."""

from __future__ import annotations

import asyncio
import os

from maillage.benchmarks.mesh import open_mesh
from maillage.client import AsyncClient
from maillage.placement import chunk_partition, partition_table
from maillage.proto.frame import chunk_digest


def test_every_object_reads_back_on_a_plaintext_mesh_whatever_node_holds_its_chunk(tmp_path):
    objects = {f"obj-{i}": os.urandom(256 * 1024) for i in range(24)}   # one chunk each

    async def write_then_read_each_twice(mesh) -> None:
        async with AsyncClient(profile=mesh.profile, insecure_plaintext=True) as client:
            await client.create_bucket("plain", policy=mesh.layout.policies[0].name)
            for key, data in objects.items():
                await client.put_object("plain", key, data)
            for key, data in objects.items():
                for _ in range(2):   # through each of the two index owners in turn
                    assert await (await client.get_object("plain", key)).read() == data, key

    with open_mesh(3, base_dir=tmp_path / "mesh", insecure_plaintext=True) as mesh:
        asyncio.run(write_then_read_each_twice(mesh))
        # every pair of the 3 nodes holds some chunk (R=2): each index owner coordinated the read
        # of a chunk it does not hold, which it read from a peer
        table = partition_table(mesh.layout, mesh.layout.policies[0].name)
        pairs = {frozenset(table.replicas(chunk_partition(chunk_digest(data, None), table.bits)))
                 for data in objects.values()}
        assert len(pairs) == 3, pairs
