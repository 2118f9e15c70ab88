"""Membership, repair, hand-back, tombstone expiry, chunk GC and the catalog cache, in-process: the
clock is stepped by hand, so grace periods of minutes pass in microseconds and nothing sleeps."""

from __future__ import annotations

import asyncio
import datetime
import os

import pytest

from maillage.node.cluster.membership import PeerState
from maillage.node.data.bucket_records import CACHE_SECONDS
from maillage.node.errors import NoSuchKey
from maillage.node.runtime.clock import ManualClock
from maillage.node.runtime.ratelimit import TokenBucket
from maillage.node.trust.documents import LayoutAuthError, LayoutDoc
from maillage.placement import bucket_partition, changes, chunk_partition, format_layout
from maillage.proto.trust import access, node_access

from .conftest import FRENCH, SITES, TIMINGS, make_layout, run


def owners_of(mesh, bucket: str, policy: str = "france-only") -> tuple[str, ...]:
    table = mesh.nodes["paris-1"].layout.table(policy)
    return table.replicas(bucket_partition(bucket, table.bits))


def test_gossip_moves_a_silent_node_to_suspect_then_down_and_back_up(mesh):
    async def main():
        await mesh.gossip(3)
        mesh.down("lyon-1")
        mesh.advance(TIMINGS.suspect_after)
        await mesh.gossip(3)
        for node_id in mesh.up_nodes():
            detector = mesh.nodes[node_id].detector
            assert detector.state("lyon-1") is PeerState.SUSPECT, node_id
            assert all(detector.is_up(n) for n in mesh.up_nodes())
        mesh.advance(TIMINGS.down_after)
        await mesh.gossip(3)
        assert all(mesh.nodes[n].detector.is_down("lyon-1") for n in mesh.up_nodes())
        mesh.up("lyon-1")
        await mesh.gossip(3)
        assert all(mesh.nodes[n].detector.is_up("lyon-1") for n in mesh.nodes)
    run(main())


def test_a_newer_signed_layout_spreads_by_gossip_and_a_forged_one_does_not(mesh):
    async def main():
        newer = make_layout(SITES[:-1] + (("munich-1", "eu/de/bayern"), ("berlin-1", "eu/de/berlin")), version=2)
        text = format_layout(newer)
        paris = mesh.nodes["paris-1"]
        assert paris.layout.offer(newer, mesh.signer.sign(2, text, kind="layout"), text)
        await mesh.gossip(4)
        assert {n.layout.current.version for n in mesh.nodes.values()} == {2}
        forged = make_layout(version=3)
        paris.layout.offer(forged, b"\x00" * 64, format_layout(forged))  # bypassing the check locally
        await mesh.gossip(4)
        assert {n.layout.current.version for n in mesh.nodes.values() if n is not paris} == {2}
    run(main())


@pytest.mark.parametrize("forged", [False, True], ids=["signed", "forged"])
def test_a_node_added_by_a_layout_change_learns_the_layouts_before_it_from_a_peer(mesh, monkeypatch, forged):
    """It never applied them, and bucket lookups ask the owners under them (`Catalog.moved`): it
    pulls them once from a peer, each checked against the admin's signature like any layout."""
    async def main():
        first = mesh.layout
        added = changes.add_node(changes.add_site(first, "bordeaux-1", "eu/fr/naq"), "bordeaux-1",
                                 "10.0.1.1:7000", "bordeaux-1", 1 << 40)
        mesh.apply_layout(changes.bump(added, 2))
        new = mesh.nodes["bordeaux-1"]
        assert new.layout.history() == []
        if forged:
            for node in mesh.nodes.values():
                if node is not new:
                    monkeypatch.setattr(node.layout, "history_doc",
                                        lambda before: (1, format_layout(make_layout(SITES[:-1])), b"\x00" * 64))
        await mesh.gossip(3)
        assert [h.version for h in new.layout.history()] == ([] if forged else [1])
        if not forged:
            assert new.layout.history()[0] == first
    run(main())


def published(master: access.AccessDoc) -> str:
    return node_access.encode_node_access(node_access.publish(master, today=datetime.datetime.now(datetime.UTC).date()))


def test_a_revocation_spreads_by_gossip_to_a_node_that_missed_the_push_and_a_forged_doc_does_not(mesh):
    async def main():
        def signed(d):
            text = published(d)
            return LayoutDoc(d.version, text, mesh.signer.sign(d.version, text, kind="access"))

        doc = access.add_tenant(access.AccessDoc(), "hospital", now_ms=1)
        doc, key = access.create_key(doc, "hospital", "read-write", now_ms=1)
        for node in mesh.nodes.values():
            assert node.access.offer(signed(doc)) and node.access.key(key.key_id) is not None
        doc = access.revoke_key(doc, key.key_id)
        paris = mesh.nodes["paris-1"]
        # the admin's push reached paris only (the others were unreachable at that moment)
        assert paris.access.offer(signed(doc))
        assert paris.access.key(key.key_id) is None
        await mesh.gossip(4)
        assert {n.access.version for n in mesh.nodes.values()} == {doc.version}
        assert all(n.access.key(key.key_id) is None for n in mesh.nodes.values())
        # a layout signature never passes for an access document, nor a made-up one
        newer = access.add_tenant(doc, "intruder", now_ms=2)
        forged_text = published(newer)
        for signature in (mesh.signer.sign(newer.version, forged_text, kind="layout"), b"\x00" * 64):
            with pytest.raises(LayoutAuthError):
                paris.access.offer(LayoutDoc(newer.version, forged_text, signature))
        assert paris.access.version == doc.version
    run(main())


def test_hand_back_returns_a_hinted_write_to_its_owner_and_drops_the_hint(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        owners = owners_of(mesh, "scans")
        mesh.down(owners[0])
        await mesh.put("scans", "k", os.urandom(3000))
        hinted = mesh.holders("scans", "k") - set(owners)
        assert len(hinted) == 1 and hinted <= FRENCH
        await mesh.repair()  # the owner is unreachable: the hint stays
        assert hinted <= mesh.holders("scans", "k")
        mesh.up(owners[0])
        await mesh.repair(2)
        assert mesh.holders("scans", "k") == set(owners)
        assert await mesh.get("scans", "k", via=owners[0]) == await mesh.get("scans", "k", via=owners[1])
    run(main())


def test_a_peer_heard_again_starts_a_round_only_on_nodes_holding_something_for_others(mesh, monkeypatch):
    """A mesh starting (every peer's first answer a recovery) asks for no round; a write handed off
    while its owner was suspected does, on the node holding it, when the owner answers again."""
    asked: list[str] = []
    for node_id, node in mesh.nodes.items():
        monkeypatch.setattr(node.repairer, "trigger", lambda n=node_id: asked.append(n))

    async def recover(node_id: str) -> None:
        mesh.down(node_id)
        mesh.advance(TIMINGS.suspect_after)
        await mesh.gossip(3)
        assert all(mesh.nodes[n].detector.state(node_id) is PeerState.SUSPECT for n in mesh.up_nodes())
        mesh.up(node_id)
        await mesh.gossip(3)
        checks = [c for node in mesh.nodes.values() if (c := node.repairer._recovery_check) is not None]
        assert checks, "no node looked at what it holds"
        await asyncio.gather(*checks)

    async def main():
        await mesh.create_bucket("scans", "france-only")
        owners = owners_of(mesh, "scans")
        await mesh.gossip(2)
        await recover(owners[0])
        assert asked == []
        mesh.down(owners[0])
        mesh.advance(TIMINGS.suspect_after)
        await mesh.gossip(3)
        await mesh.put("scans", "k", os.urandom(3000))
        hinted = mesh.holders("scans", "k") - set(owners)
        assert len(hinted) == 1
        manifest = await mesh.nodes[next(iter(hinted))].local.get_manifest("scans", "k")
        table = mesh.nodes["paris-1"].layout.table("france-only")
        for chunk in manifest.chunks:  # a chunk whose owners include the suspected node was handed off too
            hinted |= mesh.chunk_holders(chunk.digest) - set(table.replicas(chunk_partition(chunk.digest, table.bits)))
        mesh.up(owners[0])
        await recover(owners[0])
        assert set(asked) == hinted
    run(main())


def test_a_write_handed_off_while_both_owners_were_silent_reads_back_before_hand_back(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        owners = owners_of(mesh, "scans")
        reader = next(n for n in sorted(FRENCH) if n not in owners)
        await mesh.put("scans", "k", b"old" * 1000, via=reader)
        for owner in owners:
            mesh.down(owner)
        mesh.advance(TIMINGS.suspect_after)
        await mesh.gossip(3)
        new = await mesh.put("scans", "k", b"new" * 1000, via=reader)  # acknowledged by two handoff nodes
        for owner in owners:
            stale = await mesh.nodes[owner].local.get_manifest("scans", "k")
            assert stale is not None and stale.version < new.version
        for owner in owners:
            mesh.up(owner)
        await mesh.gossip(3)                                          # heard again, not repaired yet
        assert await mesh.get("scans", "k", via=reader) == b"new" * 1000
    run(main())


def test_a_node_marked_out_has_its_data_copied_to_the_replacement_owner(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        data = os.urandom(4000)
        m = await mesh.put("scans", "k", data)
        owners = owners_of(mesh, "scans")
        mesh.down(owners[0])
        await mesh.gossip(1)   # (mechanics, SWIM: a suspicion starts when a probe fails, not at the last word heard)
        mesh.advance(TIMINGS.down_after + 1)
        await mesh.gossip(3)
        await mesh.repair(2)
        holders = mesh.holders("scans", "k") - {owners[0]}
        assert len(holders) == 2 and holders <= FRENCH
        for ref in m.chunks:
            assert len(mesh.chunk_holders(ref.digest) - {owners[0]}) >= 2
        assert await mesh.get("scans", "k", via="munich-1") == data
        progress = mesh.nodes[owners[1]].repairer.progress
        assert progress.rounds_completed == 2 and progress.groups_done == progress.groups_total
    run(main())


def test_a_tombstone_expires_only_after_the_grace_and_only_when_every_owner_has_it(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        await mesh.put("scans", "gone", b"v1")
        owners = owners_of(mesh, "scans")
        mesh.down(owners[1])
        await mesh.delete("scans", "gone")
        mesh.up(owners[1])
        mesh.advance(TIMINGS.gc_grace + 1)
        await mesh.gossip(3)
        # owners[1] still holds the live version: the first round must not drop the tombstone
        # on owners[0] before owners[1] has pulled it.
        await mesh.repair(3)
        assert mesh.holders("scans", "gone") == set()
        for via in mesh.nodes:
            with pytest.raises(Exception, match="no object"):
                await mesh.get("scans", "gone", via=via)
        removed = sum(n.repairer.progress.tombstones_removed for n in mesh.nodes.values())
        assert removed >= 2
    run(main())


def test_a_hint_cut_off_from_its_owners_past_the_grace_never_brings_back_a_deleted_object(mesh):
    """A stand-in holds a write taken while an owner was down, then is cut off from both owners
    (its site's uplink) while the object is deleted and the tombstone expires on them. Back, it must
    not hand the old version to owners that hold nothing of the key any more: the hint stays where
    it is (counted, never dropped: every owner may have lost it), and the object stays deleted."""
    async def main():
        await mesh.create_bucket("scans", "france-only")
        owners = owners_of(mesh, "scans")
        mesh.down(owners[0])
        await mesh.put("scans", "k", b"old" * 1000, via=owners[1])
        stand_in = next(iter(mesh.holders("scans", "k") - set(owners)))
        mesh.up(owners[0])
        for owner in owners:
            mesh.network.cut(stand_in, owner)
        await mesh.repair(2)
        await mesh.delete("scans", "k", via=owners[1])
        for _ in range(3):  # the grace passes a third at a time, with repair rounds
            mesh.advance(TIMINGS.gc_grace / 3 + 1)
            await mesh.gossip(3)
            await mesh.repair(2)
        assert mesh.holders("scans", "k") == {stand_in}  # the owners dropped the expired tombstone
        mesh.network.heal()
        await mesh.gossip(3)
        await mesh.repair(3)
        for node_id in mesh.nodes:
            with pytest.raises(NoSuchKey):
                await mesh.get("scans", "k", via=node_id)
        assert mesh.holders("scans", "k") == {stand_in}
        assert mesh.nodes[stand_in].repairer.progress.handoff_items == 1
    run(main())


def test_chunk_gc_removes_unreferenced_chunks_after_the_grace_and_waits_for_every_node(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        kept = await mesh.put("scans", "kept", os.urandom(2048))
        old = await mesh.put("scans", "replaced", os.urandom(2048))
        gone = await mesh.put("scans", "deleted", os.urandom(2048))
        await mesh.put("scans", "replaced", os.urandom(2048))
        await mesh.delete("scans", "deleted")
        garbage = [r.digest for r in old.chunks + gone.chunks]
        await mesh.collect_garbage()  # too young: nothing goes
        assert all(mesh.chunk_holders(d) for d in garbage)
        mesh.advance(TIMINGS.gc_grace + 1)
        await mesh.gossip(3)
        mesh.down("marseille-1")  # an eligible node that does not answer postpones the GC
        await mesh.collect_garbage()
        assert all(mesh.chunk_holders(d) for d in garbage)
        mesh.up("marseille-1")
        await mesh.collect_garbage()
        assert not any(mesh.chunk_holders(d) for d in garbage)
        assert all(len(mesh.chunk_holders(r.digest)) >= 2 for r in kept.chunks)
        assert sum(n.collector.stats.chunks_removed for n in mesh.nodes.values()) >= len(garbage)
    run(main())


def test_the_catalog_caches_a_remote_bucket_record_for_a_few_seconds(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        munich = mesh.nodes["munich-1"]
        assert (await munich.catalog.find("scans")) is not None
        for n in FRENCH:
            mesh.down(n)
        assert (await munich.catalog.find("scans")) is not None  # from the cache
        mesh.advance(CACHE_SECONDS)
        assert (await munich.catalog.find("scans")) is None
    run(main())


def test_the_token_bucket_waits_on_its_clock():
    async def main():
        clock = ManualClock()
        bucket = TokenBucket(1000, clock)
        await bucket.take(1000)  # the first second's burst
        waiting = asyncio.ensure_future(bucket.take(500))
        await asyncio.sleep(0)
        assert not waiting.done() and clock.sleepers == 1
        clock.advance(0.4)
        await asyncio.sleep(0)
        assert not waiting.done()
        clock.advance(0.1)
        await asyncio.wait_for(waiting, 1.0)
        await TokenBucket(0, clock).take(10**9)  # rate 0: unlimited
    run(main())


def test_a_wiped_node_pulls_a_bounded_number_of_groups_from_each_peer_at_once(mesh, monkeypatch):
    from maillage.node.cluster import repair as repair_module
    monkeypatch.setattr(repair_module, "PULLS_PER_PEER", 2)
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}
    real_pull = repair_module.Repairer._pull

    async def counted_pull(self, peer, group, plan, job):
        in_flight[peer] = in_flight.get(peer, 0) + 1
        most[peer] = max(most.get(peer, 0), in_flight[peer])
        try:
            await asyncio.sleep(0)  # let the other pulls of this round start, if they may
            return await real_pull(self, peer, group, plan, job)
        finally:
            in_flight[peer] -= 1
    monkeypatch.setattr(repair_module.Repairer, "_pull", counted_pull)

    async def main():
        await mesh.create_bucket("scans", "france-only")
        manifests = [await mesh.put("scans", f"k{i}", os.urandom(3000 + i)) for i in range(40)]  # chunked here
        victim = "paris-1"
        chunks = mesh.nodes[victim].local.chunks
        owed = set(chunks.iter_digests())
        for digest in owed:  # the wipe
            chunks.delete(digest)
        await mesh.repair(1, nodes=[victim])
        assert owed and all(chunks.has(d) for d in owed)  # all back in one round
        assert most and max(most.values()) == 2  # and never more than the bound per peer
        for i, m in enumerate(manifests):
            assert await mesh.get("scans", f"k{i}") is not None and m.size == 3000 + i
    run(main())
