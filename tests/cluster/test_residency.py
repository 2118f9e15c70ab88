"""Residency against careless requests, on real node processes (issue 14, cases 1 and 2): a bucket
deleted and created again under a wider policy never hands its old key names to a node the old
policy excluded, even when a node that missed the delete comes back; a copy into a wider policy is
refused. What each node stores is read from the node itself (Replica.Inventory) and from its files.
"""

from __future__ import annotations

import pytest

from maillage.client import Client, NoSuchKey, OutsidePolicy
from maillage.placement import bucket_partition, partition_table
from maillage.testing import eventually
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import CHUNK, FRENCH, POLICIES, SITES
from .helpers import files_containing, inventory, node_status

FAST = ("--chunk-size", str(CHUNK), "--heartbeat-interval", "0.3", "--suspect-after", "1.5",
        "--down-after", "4", "--repair-interval", "0.5", "--gc-grace", "3")
OLD_KEY = "patients/dupont-jeanne-1961-04-02.txt"
GERMAN = "munich-1"
SETTLE = 40.0  # seconds: the bound for repair to act


def owners(mesh: LocalMesh, bucket: str, policy: str) -> tuple[str, ...]:
    table = partition_table(mesh.layout, policy)
    return table.replicas(bucket_partition(bucket, table.bits))


def exposed_name(mesh: LocalMesh) -> str:
    """A bucket name whose EU-wide index the German node owns with a France-only index owner."""
    for i in range(1000):
        name = f"records-{i}"
        eu, fr = owners(mesh, name, "eu-wide"), owners(mesh, name, "france-only")
        if GERMAN in eu and set(eu) & set(fr):
            return name
    raise AssertionError("no such bucket name in this layout")


def key_names(mesh: LocalMesh, node_id: str) -> set[str]:
    return {k for b in inventory(mesh, mesh.address(node_id)).buckets for k in b.keys}


def rounds(mesh: LocalMesh, node_id: str) -> int:
    return node_status(mesh, node_id).repair.rounds_completed


@pytest.fixture()
def mesh(tmp_path):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path, extra_args=FAST) as m:
        yield m


def test_a_recreated_bucket_leaves_no_trace_of_the_old_keys_outside_the_old_policy(mesh):
    name = exposed_name(mesh)
    with Client(profile=mesh.profile) as c:
        c.create_bucket(name, "france-only")
        c.put_object(name, OLD_KEY, b"dossier " * 100_000)  # several chunks
        stale = next(n for n in owners(mesh, name, "france-only") if OLD_KEY in key_names(mesh, n))
        mesh.kill(stale)  # misses the delete of the key, of the bucket and the re-creation
        c.delete_object(name, OLD_KEY)
        c.delete_bucket(name)
        bucket = c.create_bucket(name, "eu-wide")
        assert bucket.policy == "eu-wide" and bucket.generation
        c.put_object(name, "fresh", b"new")
        mesh.start_node(stale)
        start = {n.id: rounds(mesh, n.id) for n in mesh.layout.nodes}
        eventually(lambda: all(rounds(mesh, n) >= r + 4 for n, r in start.items()), timeout=SETTLE,
                   what="4 repair rounds")
        eventually(lambda: OLD_KEY not in key_names(mesh, stale), timeout=SETTLE,
                   what="the stale node dropping the old key")
        for node in mesh.layout.nodes:
            if node.id not in FRENCH:
                assert OLD_KEY not in key_names(mesh, node.id), node.id
        assert files_containing(mesh.data_dir(GERMAN), OLD_KEY.encode()) == []
        assert [o.key for o in c.list_objects(name)] == ["fresh"]
        with pytest.raises(NoSuchKey):
            c.head_object(name, OLD_KEY)


def test_a_copy_into_a_wider_policy_is_refused(mesh):
    with Client(profile=mesh.profile) as c:
        c.create_bucket("fr-src", "france-only")
        c.create_bucket("eu-dst", "eu-wide")
        c.put_object("fr-src", OLD_KEY, b"x" * (2 * CHUNK))
        with pytest.raises(OutsidePolicy, match="france-only"):
            c.copy_object("fr-src", OLD_KEY, "eu-dst", "copy")
        with pytest.raises(NoSuchKey):
            c.head_object("eu-dst", "copy")
        assert OLD_KEY not in key_names(mesh, GERMAN)
        assert not inventory(mesh, mesh.address(GERMAN)).all_chunks
