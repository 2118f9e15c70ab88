"""The dedup probe (HasChunks) before sending a large chunk to a remote replica: asked only when the
coordinator cannot answer for the replica set itself (issue 27: one round trip fewer per new chunk)."""

from __future__ import annotations

import os

from maillage.node.data.coordinator import PROBE_ABOVE
from maillage.placement import chunk_partition, partition_table
from maillage.testing.inmemory import InMemoryMesh

from .conftest import TIMINGS, make_layout, run

CHUNK = 2 * PROBE_ABOVE     # every chunk of random bytes is above the probe's threshold


def test_a_replica_coordinator_sends_new_chunks_without_asking_and_asks_before_resending_known_ones(tmp_path):
    mesh = InMemoryMesh(make_layout(), tmp_path, timings=TIMINGS, chunk_size=CHUNK)
    try:
        async def scenario() -> None:
            await mesh.create_bucket("scans", "france-only")
            table = partition_table(mesh.layout, "france-only")
            data = os.urandom(6 * CHUNK)
            calls = mesh.network.methods
            probes, puts = calls["has_chunks"], calls["put_chunk"]
            manifest = await mesh.put("scans", "a.bin", data, via="paris-1")
            owners = [table.replicas(chunk_partition(ref.digest, table.bits)) for ref in manifest.chunks]
            assert len(owners) == 6 and any("paris-1" in o for o in owners) and any("paris-1" not in o for o in owners)
            # only chunks paris-1 does not hold itself are asked about, once per remote replica
            assert calls["has_chunks"] - probes == sum(len(o) for o in owners if "paris-1" not in o)
            assert calls["put_chunk"] - puts == sum(len(o) - ("paris-1" in o) for o in owners)
            # the same bytes again: a chunk paris-1 holds is asked about, and not sent again
            probes, puts = calls["has_chunks"], calls["put_chunk"]
            await mesh.put("scans", "b.bin", data, via="paris-1")
            assert calls["has_chunks"] - probes == sum(len(o) - ("paris-1" in o) for o in owners)
            assert calls["put_chunk"] == puts
            assert await mesh.get("scans", "b.bin", via="munich-1") == data
        run(scenario())
    finally:
        mesh.close()
