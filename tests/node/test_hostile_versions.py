"""Versions from outside the node (issue 14, case 6): one far ahead of the clock is refused with a
typed error and never drags the node's clock along; every later write still works."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest

from maillage.node.daemon.wiring import Timings
from maillage.node.rpc.boundary import reason_for
from maillage.proto.reasons import Reason, status_of
from maillage.storage import version_time
from maillage.storage.errors import VersionTooFarAhead
from maillage.storage.hlc import MAX_VERSION
from maillage.testing.inmemory import InMemoryMesh

from .conftest import TIMINGS, make_layout, run


def test_version_2_64_minus_1_is_refused_and_every_later_write_still_works(mesh) -> None:
    async def go() -> None:
        bucket = await mesh.create_bucket("scans", "france-only")
        good = await mesh.put("scans", "a", b"first")
        owner = next(iter(mesh.holders("scans", "a")))
        poison = replace(good, version=MAX_VERSION, writer="attacker")
        for node in mesh.nodes.values():  # every replica, owner or not, refuses it
            with pytest.raises(VersionTooFarAhead, match="ahead of this node's clock"):
                await node.local.put_manifest(poison, bucket)
        assert mesh.nodes[owner].local.meta.get_manifest("scans", "a").version == good.version
        assert reason_for(VersionTooFarAhead("x")) is Reason.INVALID_REQUEST
        assert status_of(Reason.INVALID_REQUEST) is grpc.StatusCode.INVALID_ARGUMENT
        # every later write works, on every node as coordinator (the key too: overwrite, delete)
        for via in mesh.nodes:
            m = await mesh.put("scans", "a", via.encode(), via=via)
            assert version_time(m.version) == pytest.approx(mesh.clock.time(), abs=1)
        await mesh.create_bucket("other", "eu-wide")
        await mesh.put("other", "b", b"x")
        await mesh.delete("scans", "a")
        assert (await mesh.put("scans", "a", b"again")).version > good.version

    run(go())


def test_a_version_past_the_drift_is_refused_one_within_is_taken(tmp_path) -> None:
    mesh = InMemoryMesh(make_layout(), tmp_path, timings=replace(TIMINGS, max_clock_drift=60))
    try:
        async def go() -> None:
            bucket = await mesh.create_bucket("scans", "france-only")
            good = await mesh.put("scans", "a", b"first")
            node = mesh.nodes[next(iter(mesh.holders("scans", "a")))]
            ahead = lambda s: ((int((mesh.clock.time() + s) * 1000)) << 16)  # noqa: E731
            with pytest.raises(VersionTooFarAhead, match=r"61 s ahead.*60 s allowed"):
                await node.local.put_manifest(replace(good, version=ahead(61)), bucket)
            assert await node.local.put_manifest(replace(good, version=ahead(30)), bucket)
            after = await mesh.put("scans", "a", b"second")
            assert after.version > ahead(30)  # observed: still last writer wins
        run(go())
    finally:
        mesh.close()


def test_a_stored_poisoned_version_is_not_carried_to_the_reader(mesh) -> None:
    """A record stored before the check (or written around it) is refused when read, clearly; the
    reading node's clock stays where it was, so writes of every other key still work."""
    async def go() -> None:
        await mesh.create_bucket("scans", "france-only")
        good = await mesh.put("scans", "a", b"first")
        for node_id in mesh.holders("scans", "a"):
            mesh.nodes[node_id].local.meta.put_manifest(replace(good, version=MAX_VERSION, writer="zz"))
        reader = mesh.via()
        before = reader.coordinator._clock.last
        with pytest.raises(VersionTooFarAhead):
            await reader.coordinator.head_object(await reader.coordinator.head_bucket("scans"), "a")
        assert reader.coordinator._clock.last < MAX_VERSION
        assert reader.coordinator._clock.last >= before
        m = await mesh.put("scans", "b", b"fine")
        assert version_time(m.version) == pytest.approx(mesh.clock.time(), abs=1)

    run(go())


def test_the_node_option_reaches_the_clock() -> None:
    assert Timings().max_clock_drift == 300


def test_a_write_goes_above_a_newer_version_held_by_one_replica_without_reading_first(tmp_path, monkeypatch) -> None:
    """With the index replicas settled, a PUT writes at once (no read of the key's current version);
    a replica holding a newer version (another coordinator's clock ahead of ours) answers "not
    applied", and the write is made again above it: the new content wins on every replica."""
    from maillage.node.replicas.replica import LocalReplica
    reads = []
    original = LocalReplica.get_manifest

    async def counted(self, *args, **kwargs):
        reads.append(args[:2])
        return await original(self, *args, **kwargs)

    mesh = InMemoryMesh(make_layout(), tmp_path, timings=replace(TIMINGS, max_clock_drift=60))
    try:
        async def go() -> None:
            bucket = await mesh.create_bucket("scans", "france-only")
            good = await mesh.put("scans", "a", b"first")
            monkeypatch.setattr(LocalReplica, "get_manifest", counted)
            await mesh.put("scans", "a", b"second")
            assert reads == []  # settled: one round trip, the write itself

            owners = sorted(mesh.holders("scans", "a"))
            ahead = ((int((mesh.clock.time() + 30) * 1000)) << 16)
            assert await mesh.nodes[owners[0]].local.put_manifest(
                replace(good, version=ahead, writer="fast-clock"), bucket)
            for via in mesh.nodes:  # whichever node coordinates
                m = await mesh.put("scans", "a", via.encode(), via=via)
                assert m.version > ahead
                for owner in owners:
                    stored = mesh.nodes[owner].local.meta.get_manifest("scans", "a")
                    assert (stored.version, stored.inline) == (m.version, via.encode())
        run(go())
    finally:
        mesh.close()


def test_a_write_whose_version_number_collides_with_the_stored_one_is_made_again_above_it(mesh) -> None:
    """Two coordinators can issue the same version number (one followed the other's clock): the
    writer breaks the tie for ordering, but the later write must still get a number above the
    earlier one's, as a read before the write would give it."""
    async def go() -> None:
        bucket = await mesh.create_bucket("scans", "france-only")
        good = await mesh.put("scans", "a", b"first")
        for via, node in mesh.nodes.items():
            upcoming = node.coordinator.now() + 1  # the manual clock stands still: next is +1
            earlier = replace(good, version=upcoming, writer="!")  # sorts below every node id
            for owner in mesh.holders("scans", "a"):
                await mesh.nodes[owner].local.put_manifest(earlier, bucket)
            m = await mesh.put("scans", "a", via.encode(), via=via)
            assert m.version > upcoming
            good = m
    run(go())
