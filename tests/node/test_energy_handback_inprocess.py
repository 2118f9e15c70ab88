"""Hand-back under the site's energy state, in-process: a shed order keeps a hint that is at R
(counting it) until the order is lifted, but a hint fewer than R nodes hold is handed back at once,
and one no owner lacks any more is dropped at once."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.node.energy.signal import Order, Reading, Signal, State
from maillage.node.errors import NoSuchKey
from maillage.node.replicas.antientropy import short_of_copies
from maillage.placement import bucket_partition

from .conftest import FRENCH, TIMINGS, run


def owners_of(mesh, bucket: str) -> list[str]:
    table = mesh.nodes["paris-1"].layout.table("france-only")
    return list(table.replicas(bucket_partition(bucket, table.bits)))


def set_order(mesh, node_id: str, order: Order) -> None:
    node = mesh.nodes[node_id]
    node.energy.update(Signal(Reading(node.clock.time(), surplus_w=100.0, order=order)))
    assert node.energy.state is (State.SHED if order is Order.SHED else State.GREEN)


def test_a_shed_order_defers_a_hint_at_r_and_normal_hands_it_back(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        owners = owners_of(mesh, "scans")
        mesh.down(owners[0])
        await mesh.put("scans", "k", os.urandom(3000))
        hinted = mesh.holders("scans", "k") - set(owners)
        assert len(hinted) == 1
        stand_in = next(iter(hinted))
        set_order(mesh, stand_in, Order.SHED)
        mesh.up(owners[0])
        await mesh.repair(1, [stand_in])
        # the owner back lacks it, but it is at R counting the hint: the hint waits, kept here
        assert mesh.holders("scans", "k") == {owners[1], stand_in}
        assert mesh.nodes[stand_in].energy.jobs[mesh_kind("hand-back")].stats.waits > 0
        await mesh.repair(2)
        # the owner back pulled it from its co-owner (urgent); no owner lacks it any more, so the
        # hint goes whatever the energy (dropping moves nothing)
        assert mesh.holders("scans", "k") == set(owners)
        set_order(mesh, stand_in, Order.NORMAL)
        await mesh.repair(2)
        assert mesh.holders("scans", "k") == set(owners)
    run(main())


def test_a_hint_short_of_r_is_handed_back_under_a_shed_order(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        owners = owners_of(mesh, "scans")
        reader = next(n for n in sorted(FRENCH) if n not in owners)
        for owner in owners:
            mesh.down(owner)
        mesh.advance(TIMINGS.suspect_after)
        await mesh.gossip(3)
        await mesh.put("scans", "k", b"new" * 1000, via=reader)  # held by two stand-ins only
        stand_ins = mesh.holders("scans", "k") - set(owners)
        assert len(stand_ins) == 2
        for node_id in stand_ins:
            set_order(mesh, node_id, Order.SHED)
        for owner in owners:
            mesh.up(owner)
        await mesh.gossip(3)
        await mesh.repair(2)
        # no owner held it: each stand-in sees it short of R and pushes it whatever the energy,
        # and keeps its own copy until the order is lifted
        assert set(owners) <= mesh.holders("scans", "k")
        for owner in owners:
            assert await mesh.get("scans", "k", via=owner) == b"new" * 1000
        for node_id in stand_ins:
            set_order(mesh, node_id, Order.NORMAL)
        await mesh.repair(2)
        assert mesh.holders("scans", "k") == set(owners)
    run(main())


def mesh_kind(value: str):  # noqa: ANN201
    from maillage.node.energy.decide import Kind
    return Kind(value)


@given(holdings=st.dictionaries(st.sampled_from("abcd"), st.sets(st.integers(0, 5)), max_size=4),
       ours=st.sets(st.integers(0, 5)), replicas=st.integers(2, 4))
def test_short_of_copies_counts_this_copy_and_each_owner_that_holds_it(holdings, ours, replicas):
    wanted = {o: sorted(ours - held) for o, held in holdings.items()}
    short = short_of_copies(ours, wanted, replicas)
    for item in ours:
        holders = 1 + sum(1 for held in holdings.values() if item in held)
        assert (item in short) == (holders < replicas)


def test_a_drain_moves_nothing_under_shed_and_everything_after(mesh):
    """A layout change (lyon-1 drains) is a rebalance: every copy stays at R on the old owners, so
    under a shed order neither the new owners pull nor lyon-1 hands back; once lifted, all moves."""
    from maillage.placement import changes, chunk_partition

    async def main():
        await mesh.create_bucket("scans", "france-only")
        manifests = [await mesh.put("scans", f"k{i}", os.urandom(2500)) for i in range(12)]
        digests = {c.digest for m in manifests for c in m.chunks}
        await mesh.repair()  # every node has worked out its ownership of this layout
        on_lyon = {d for d in digests if "lyon-1" in mesh.chunk_holders(d)}
        assert on_lyon
        for node_id in mesh.nodes:
            set_order(mesh, node_id, Order.SHED)
        before = {d: mesh.chunk_holders(d) for d in digests}
        mesh.apply_layout(changes.bump(changes.drain(mesh.layout, "lyon-1"), mesh.layout.version + 1))
        await mesh.gossip(3)
        await mesh.repair(2)
        assert {d: mesh.chunk_holders(d) for d in digests} == before
        moving = [n.repairer._rebalance for n in mesh.nodes.values() if n.repairer._rebalance.stats.waits]
        assert moving and all(job.due is not None for job in moving)  # deferred, with a deadline
        for node_id in mesh.nodes:
            set_order(mesh, node_id, Order.NORMAL)
        await mesh.gossip(3)  # peers hear it is lifted (a transfer waits for both sites' windows)
        await mesh.repair(3)
        table = mesh.nodes["paris-1"].layout.table("france-only")
        for d in digests:
            owners = set(table.replicas(chunk_partition(d, table.bits)))
            assert "lyon-1" not in owners and mesh.chunk_holders(d) == owners
    run(main())


def test_a_hint_deferred_past_the_grace_never_brings_back_an_object_deleted_since(mesh):
    """A hint at R waits for a green window (up to the hand-back deadline, a day), but the object's
    tombstone on its owners expires after the grace: pushed once the order is lifted, a hint older
    than the grace found owners holding nothing of the key and brought the deleted object back. A
    hint no owner lacks any more (they hold it, or the newer tombstone) goes at once, whatever the
    energy."""
    async def main():
        await mesh.create_bucket("scans", "france-only")
        owners = owners_of(mesh, "scans")
        mesh.down(owners[0])
        await mesh.put("scans", "k", b"old" * 1000)
        stand_in = next(iter(mesh.holders("scans", "k") - set(owners)))
        set_order(mesh, stand_in, Order.SHED)
        mesh.up(owners[0])
        await mesh.repair(2)
        await mesh.delete("scans", "k", via=owners[1])
        for _ in range(3):  # the grace passes a third at a time, with repair rounds
            mesh.advance(TIMINGS.gc_grace / 3 + 1)
            set_order(mesh, stand_in, Order.SHED)  # the order stands (a fresh reading)
            await mesh.gossip(3)
            await mesh.repair(2)
        set_order(mesh, stand_in, Order.NORMAL)
        await mesh.gossip(3)
        await mesh.repair(3)
        for node_id in mesh.nodes:
            with pytest.raises(NoSuchKey):
                await mesh.get("scans", "k", via=node_id)
    run(main())
