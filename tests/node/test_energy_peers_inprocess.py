"""A site's energy state travels in heartbeats (issue 26): peers prefer to read from a site with
power to spare, and a transfer between two sites waits for a window that suits both. In-process
nodes over the in-memory network; the peer's word only ever turns a window grey, so it can delay
deferrable work by its slack and nothing else."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from maillage.node.cluster.membership import ENERGY_FRESH
from maillage.node.energy.decide import Kind, shared
from maillage.node.energy.signal import Order, Reading, Signal, State
from maillage.node.replicas.transport import Heartbeat
from maillage.node.rpc import convert
from maillage.placement import bucket_partition, chunk_partition
from maillage.proto import maillage_pb2 as pb

from .conftest import run


def set_state(mesh, node_id: str, state: State) -> None:
    node = mesh.nodes[node_id]
    reading = {State.GREEN: Reading(node.clock.time(), surplus_w=100.0),
               State.GREY: Reading(node.clock.time(), surplus_w=-100.0, carbon=400.0),
               State.SHED: Reading(node.clock.time(), surplus_w=100.0, order=Order.SHED)}[state]
    node.energy.update(Signal(reading))
    assert node.energy.state is state


@given(own=st.sampled_from(list(State)), peer=st.sampled_from(["", "unknown", "junk", *(s.value for s in State)]))
def test_a_peer_can_only_turn_a_window_grey(own, peer) -> None:
    got = shared(own, peer)
    if own in (State.GREEN, State.UNKNOWN) and peer in ("grey", "shed"):
        assert got is State.GREY
    else:
        assert got is own


def test_a_peer_speaks_for_its_own_site_only_and_its_word_grows_stale(mesh) -> None:
    async def main():
        set_state(mesh, "lyon-1", State.SHED)
        await mesh.gossip(2)
        gossip = mesh.nodes["paris-1"].gossip
        assert gossip.energy_of("lyon-1") == "shed"
        assert gossip.energy_of("toulouse-1") == "unknown"   # no source: nothing said, as before
        # a word that is no state is unknown; a heartbeat from a stranger changes nothing
        gossip.on_heartbeat(Heartbeat("lyon-1", 1, energy="x" * 10_000))
        assert gossip.energy_of("lyon-1") == "unknown"
        gossip.on_heartbeat(Heartbeat("lyon-1", 1, energy="green"))
        gossip.on_heartbeat(Heartbeat("nobody", 1, energy="shed"))
        assert gossip.energy_of("lyon-1") == "green" and gossip.energy_of("nobody") == "unknown"
        mesh.advance(ENERGY_FRESH + 1)
        assert gossip.energy_of("lyon-1") == "unknown"
    run(main())


def test_reads_go_to_the_equally_near_copy_whose_site_is_green(mesh) -> None:
    async def main():
        await mesh.create_bucket("scans", "france-only")
        manifest = await mesh.put("scans", "k", os.urandom(3000))
        digest = manifest.chunks[0].digest
        table = mesh.nodes["paris-1"].layout.table("france-only")
        first, second = table.replicas(chunk_partition(digest, table.bits))
        reader = next(n for n in ("paris-1", "toulouse-1", "lyon-1", "marseille-1") if n not in (first, second))
        for grey, green in ((first, second), (second, first)):
            set_state(mesh, grey, State.GREY)
            set_state(mesh, green, State.GREEN)
            await mesh.gossip(2)
            before = dict(mesh.network.calls)
            await mesh.nodes[reader].coordinator.read_chunk(table, digest)
            asked = {n for n, count in mesh.network.calls.items() if count > before.get(n, 0)}
            assert asked == {green}, (grey, green, asked)
    run(main())


def test_a_hand_back_at_r_waits_for_the_owner_s_window_too(mesh) -> None:
    async def main():
        await mesh.create_bucket("scans", "france-only")
        table = mesh.nodes["paris-1"].layout.table("france-only")
        owners = list(table.replicas(bucket_partition("scans", table.bits)))
        mesh.down(owners[0])
        await mesh.put("scans", "k", os.urandom(3000))
        stand_in = next(iter(mesh.holders("scans", "k") - set(owners)))
        mesh.up(owners[0])
        set_state(mesh, stand_in, State.GREEN)
        set_state(mesh, owners[0], State.SHED)     # the owner's site is told to shed load
        await mesh.gossip(2)
        await mesh.repair(1, [stand_in])
        # the owner back lacks it; the stand-in's hint, at R counting it, waits for the owner's
        # window although its own site is green
        assert mesh.holders("scans", "k") == {owners[1], stand_in}
        assert mesh.nodes[stand_in].energy.jobs[Kind.HAND_BACK].stats.waits > 0
        await mesh.repair(2)
        # the owner pulled it from its co-owner (urgent, whatever the energy): no owner lacks it,
        # so the hint goes (dropping moves nothing)
        assert mesh.holders("scans", "k") == set(owners)
        set_state(mesh, owners[0], State.GREEN)
        await mesh.gossip(2)
        await mesh.repair(2)
        assert mesh.holders("scans", "k") == set(owners)
    run(main())


def test_the_state_crosses_the_wire_and_unknown_costs_no_byte() -> None:
    beat = Heartbeat("lyon-1", 3, 2, 7, energy="green")
    assert convert.heartbeat_from_pb(convert.heartbeat_request_to_pb(beat)).energy == "green"
    assert convert.heartbeat_from_pb(convert.heartbeat_reply_to_pb(beat)).energy == "green"
    silent = Heartbeat("lyon-1", 3, 2, 7)
    assert convert.heartbeat_request_to_pb(silent).ByteSize() == pb.HeartbeatRequest(
        node_id="lyon-1", layout_version=3, access_version=2, incarnation=7).ByteSize()
