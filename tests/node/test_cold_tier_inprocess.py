"""Cold tier moves (issue 26) over in-process nodes (real node code and RocksDB stores, in-memory
network, manual clock): a lifecycle Transition moves a France-only object's chunks from its policy
(one copy on the French backbone, one on a French edge site) to the policy's cold policy (every copy
on the French backbone); no node outside France ever holds a byte or a key name of it, read from
each node's own store after every step; the object reads back whole; GC then drops the edge copies;
a transition the layout cannot serve is refused before anything is stored."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from maillage.node.data.coordinator import Upload, UploadStream
from maillage.node.data.lifecycle import DAY_MS, LifecycleConfig, Rule
from maillage.node.energy.decide import Kind
from maillage.node.energy.signal import Reading, Signal, State
from maillage.node.errors import InvalidArgument
from maillage.node.rpc.convert import lifecycle_stats_to_pb
from maillage.node.service.tenancy import Caller
from maillage.placement import BACKBONE, Layout, LayoutError, Node, Policy, Site, parse_location
from maillage.proto.storage_class import CHUNK_POLICY_ATTRIBUTE, STORAGE_CLASS_ATTRIBUTE
from maillage.proto.trust.access import AccessKey
from maillage.testing.inmemory import InMemoryMesh

from .conftest import TIMINGS, run

SITES = (("paris-dc", "eu/fr/idf", BACKBONE), ("marseille-dc", "eu/fr/paca", BACKBONE),
         ("lyon-1", "eu/fr/ara", "edge"), ("toulouse-1", "eu/fr/occitanie", "edge"),
         ("munich-dc", "eu/de/bayern", BACKBONE))
FRENCH_BACKBONE = {"paris-dc", "marseille-dc"}
FRANCE = FRENCH_BACKBONE | {"lyon-1", "toulouse-1"}
POLICIES = (Policy("france-hot", (("eu", "fr"),), replicas=2, backbone=1, cold="france-cold"),
            Policy("france-cold", (("eu", "fr"),), replicas=2, backbone=2),
            Policy("france-plain", (("eu", "fr"),), replicas=2))
WRITER = Caller(key=AccessKey("AKW", "secret", "acme", "read-write"))
CHUNK = 64 * 1024


def _layout(policies: tuple[Policy, ...] = POLICIES) -> Layout:
    return Layout(version=1, partition_bits=4,
                  sites=tuple(Site(name, parse_location(loc), tier=tier) for name, loc, tier in SITES),
                  nodes=tuple(Node(name, f"10.0.0.{i + 1}:7000", name, 1 << 40)
                              for i, (name, _, _) in enumerate(SITES)),
                  policies=policies)


@pytest.fixture()
def mesh(tmp_path):
    m = InMemoryMesh(_layout(), tmp_path, timings=TIMINGS, chunk_size=CHUNK)
    yield m
    m.close()


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _holdings(mesh: InMemoryMesh) -> dict[str, set[tuple[str, bytes]]]:
    """(policy, digest) of every chunk holding, per node, from each node's own store."""
    return {n: {(p, d) for p, d, _ in node.local.meta.iter_holdings()} for n, node in mesh.nodes.items()}


def _nothing_outside_france(mesh: InMemoryMesh) -> None:
    munich = mesh.nodes["munich-dc"].local
    assert not list(munich.meta.iter_holdings()) and not list(munich.chunks.iter_digests())
    assert not mesh.key_names("munich-dc")


def test_a_transition_moves_chunks_to_the_french_backbone_and_nothing_leaves_france(mesh) -> None:
    async def scenario():
        service = mesh.via("lyon-1").service
        await service.create_bucket(WRITER, "scans", "france-hot")
        objects = {f"scan-{i}.dcm": os.urandom(3 * CHUNK + 100) for i in range(4)}
        objects["small.txt"] = b"under 128 KiB: left where it is, as AWS does"
        for key, data in objects.items():
            await service.put_object(WRITER, "scans", Upload(key), UploadStream(_pieces(data)))
        before = _holdings(mesh)
        assert all(p == "france-hot" for held in before.values() for p, _ in held)
        assert any(before[n] for n in ("lyon-1", "toulouse-1"))   # the edge copies exist
        _nothing_outside_france(mesh)

        rule = Rule(id="cold", transition_days=30, transition_class="STANDARD_IA")
        await service.set_bucket_lifecycle(WRITER, "scans", LifecycleConfig((rule,)),
                                           "PutBucketLifecycleConfiguration")
        assert sum([(await mesh.nodes[n].lifecycle.sweep()).transitioned for n in mesh.up_nodes()]) == 0
        mesh.advance(30 * DAY_MS / 1000 + 1)
        moved = sum([(await mesh.nodes[n].lifecycle.sweep()).transitioned for n in mesh.up_nodes()])
        assert moved == 4
        assert sum(lifecycle_stats_to_pb(n.lifecycle.sweeps, n.lifecycle.totals).transitioned   # GetStatus's
                   for n in mesh.nodes.values()) == 4
        _nothing_outside_france(mesh)

        record = await mesh.via("paris-dc").coordinator.head_bucket("scans")
        for key, data in objects.items():
            assert await mesh.get("scans", key, via="toulouse-1") == data
            m = await mesh.via("paris-dc").coordinator.head_object(record, key)
            attributes = dict(m.attributes)
            if key == "small.txt":
                assert STORAGE_CLASS_ATTRIBUTE not in attributes
                continue
            assert attributes[STORAGE_CLASS_ATTRIBUTE] == "STANDARD_IA"
            assert attributes[CHUNK_POLICY_ATTRIBUTE] == "france-cold"
            for ref in m.chunks:   # every chunk on both French backbone sites, under the cold policy
                assert {n for n, held in _holdings(mesh).items() if ("france-cold", ref.digest) in held} \
                    == FRENCH_BACKBONE
        # The edge copies are garbage once the grace is past; GC drops them, the object still reads.
        mesh.advance(TIMINGS.gc_grace + 1)
        await mesh.collect_garbage()
        after = _holdings(mesh)
        cold_digests = {d for held in after.values() for p, d in held if p == "france-cold"}
        for node_id in ("lyon-1", "toulouse-1"):
            assert not {d for p, d in after[node_id]} & cold_digests, node_id
            assert not set(mesh.nodes[node_id].local.chunks.iter_digests()) & cold_digests, node_id
        _nothing_outside_france(mesh)
        for key, data in objects.items():
            assert await mesh.get("scans", key, via="lyon-1") == data
            _, index, frame = await service.get_object(WRITER, "scans", key, offset=CHUNK)
            assert frame or key == "small.txt"
        # A second sweep moves nothing again.
        assert sum([(await mesh.nodes[n].lifecycle.sweep()).transitioned for n in mesh.up_nodes()]) == 0
    run(scenario())


def test_a_write_after_the_listing_wins_over_the_transition(mesh) -> None:
    async def scenario():
        service = mesh.via("paris-dc").service
        await service.create_bucket(WRITER, "scans", "france-hot")
        await service.put_object(WRITER, "scans", Upload("a"), UploadStream(_pieces(os.urandom(3 * CHUNK))))
        record = await mesh.via("paris-dc").coordinator.head_bucket("scans")
        listed = await mesh.via("paris-dc").coordinator.head_object(record, "a")
        newer = os.urandom(3 * CHUNK)
        await service.put_object(WRITER, "scans", Upload("a"), UploadStream(_pieces(newer)))
        assert not await service.versions.transition(record, listed, "STANDARD_IA")
        assert await mesh.get("scans", "a") == newer
        assert not any(p == "france-cold" for held in _holdings(mesh).values() for p, _ in held)
    run(scenario())


def test_transitions_the_layout_cannot_serve_are_refused(mesh) -> None:
    async def scenario():
        service = mesh.via("paris-dc").service
        await service.create_bucket(WRITER, "plain", "france-plain")
        rule = Rule(id="cold", transition_days=1, transition_class="STANDARD_IA")
        with pytest.raises(InvalidArgument, match="names no cold policy"):
            await service.set_bucket_lifecycle(WRITER, "plain", LifecycleConfig((rule,)),
                                               "PutBucketLifecycleConfiguration")
    run(scenario())
    with pytest.raises(InvalidArgument, match="STANDARD_IA"):
        Rule(transition_days=1, transition_class="GLACIER")        # S3 makes readers restore those first
    with pytest.raises(InvalidArgument, match="Days and a StorageClass"):
        Rule(transition_days=1)
    eu = Policy("eu-cold", (("eu",),), replicas=2)
    with pytest.raises(LayoutError, match="inside the policy's territory"):
        _layout((Policy("france-hot", (("eu", "fr"),), replicas=2, cold="eu-cold"), eu))
    with pytest.raises(LayoutError, match="fewer than"):
        _layout((Policy("france-hot", (("eu", "fr"),), replicas=3, cold="france-cold"),
                 Policy("france-cold", (("eu", "fr"),), replicas=2)))
    with pytest.raises(LayoutError, match="not another policy"):
        _layout((Policy("france-hot", (("eu", "fr"),), replicas=2, cold="nowhere"),))


def _set_state(mesh: InMemoryMesh, state: State) -> None:
    for node in mesh.nodes.values():
        reading = Reading(node.clock.time(), surplus_w=100.0 if state is State.GREEN else -100.0, carbon=400.0)
        node.energy.update(Signal(reading))
        assert node.energy.state is state


def test_a_transition_is_tier_move_work_that_waits_for_a_green_window(mesh) -> None:
    async def scenario():
        service = mesh.via("lyon-1").service
        await service.create_bucket(WRITER, "scans", "france-hot")
        sizes = [3 * CHUNK + 100, 2 * CHUNK]
        for i, size in enumerate(sizes):
            await service.put_object(WRITER, "scans", Upload(f"s{i}"), UploadStream(_pieces(os.urandom(size))))
        rule = Rule(id="cold", transition_days=1, transition_class="GLACIER_IR")
        await service.set_bucket_lifecycle(WRITER, "scans", LifecycleConfig((rule,)),
                                           "PutBucketLifecycleConfiguration")
        mesh.advance(DAY_MS / 1000 + 1)
        _set_state(mesh, State.GREY)   # deferrable: nothing moves while the site draws from the grid
        assert sum([(await mesh.nodes[n].lifecycle.sweep()).transitioned for n in mesh.up_nodes()]) == 0
        assert not any(p == "france-cold" for held in _holdings(mesh).values() for p, _ in held)
        _set_state(mesh, State.GREEN)
        assert sum([(await mesh.nodes[n].lifecycle.sweep()).transitioned for n in mesh.up_nodes()]) == 2
        moved = [n.energy.jobs[Kind.TIER_MOVE].stats for n in mesh.nodes.values()
                 if Kind.TIER_MOVE in n.energy.jobs and n.energy.jobs[Kind.TIER_MOVE].stats.turns]
        assert len(moved) == 1 and moved[0].bytes == moved[0].green_bytes == sum(sizes)
    run(scenario())
