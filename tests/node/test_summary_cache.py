"""Repair walks a store only after it changed: summaries kept by change mark, in-process."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.replicas.antientropy import SyncGroup, listing_digest
from maillage.node.replicas.summary_cache import SummaryCache
from maillage.node.runtime.clock import ManualClock
from maillage.testing.examples import examples
from maillage.testing.inmemory import InMemoryMesh

from .conftest import TIMINGS, make_layout, run


def test_a_summary_is_kept_under_its_mark_only():
    clock = ManualClock()
    cache = SummaryCache(max_age=60, max_entries=3, clock=clock)
    cache.put("g", 1, "one")
    assert cache.get("g", 1) == "one"
    assert cache.get("g", 2) is None          # the store changed since
    clock.advance(61)
    assert cache.get("g", 1) is None          # too old: walked again whatever the mark says
    for key in ("a", "b", "c"):
        cache.put(key, 1, key)
    cache.put("d", 1, "d")                    # a fourth distinct group: the cache starts afresh
    assert cache.get("a", 1) is None and cache.get("d", 1) == "d"


def _walks(mesh) -> dict[str, int]:
    return {n: node.local.summaries.walks for n, node in mesh.nodes.items()}


def test_rounds_at_rest_walk_nothing_and_a_lost_copy_is_still_found(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        for i in range(5):
            await mesh.put("scans", f"k{i}", os.urandom(2048))
        await mesh.gossip(3)
        await mesh.repair(2)
        settled = _walks(mesh)
        await mesh.repair(3)                  # nothing changed: every summary and held group is kept
        assert _walks(mesh) == settled
        assert sum(n.local.summaries.hits for n in mesh.nodes.values()) > 0
        # A copy lost behind the metadata's back (its file quarantined) moves the chunk store's
        # counters: the next round walks, sees the group differ and pulls a good copy back.
        data = os.urandom(4096)
        manifest = await mesh.put("scans", "fresh", data)
        await mesh.repair(2)                  # the write walked again; kept from here on
        digest = manifest.chunks[0].digest
        holder = next(n for n in mesh.nodes.values() if n.local.chunks.has(digest))
        before = holder.local.chunks.stats().quarantined
        path = holder.local.chunks.path_of(digest)
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0xFF
        path.write_bytes(bytes(raw))
        try:
            await holder.local.get_chunk(digest)
        except Exception:
            pass
        assert holder.local.chunks.stats().quarantined == before + 1
        await mesh.repair(2)
        assert holder.local.chunks.has(digest)
        assert await mesh.get("scans", "fresh", via=holder.node_id) == data
    run(main())


def test_a_peer_asking_for_summaries_of_an_unchanged_store_costs_no_walk(mesh):
    async def main():
        await mesh.create_bucket("scans", "france-only")
        await mesh.put("scans", "k", os.urandom(2048))
        node = next(iter(mesh.nodes.values()))
        groups = [SyncGroup("france-only", p) for p in range(8)]
        first = await node.local.sync_summaries(groups)
        walks = node.local.summaries.walks
        assert await node.local.sync_summaries(groups) == first
        assert node.local.summaries.walks == walks
    run(main())


OPS = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 5), st.sampled_from([100, 3000, 70_000])),
    st.tuples(st.just("delete"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("corrupt"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("repair"), st.just(0), st.just(0)),
    st.tuples(st.just("check"), st.just(0), st.just(0)),
), min_size=1, max_size=14)


@settings(max_examples=examples(0.2), deadline=None)
@given(ops=OPS)
def test_a_kept_summary_is_always_what_a_walk_would_say(ops):
    """Whatever happened to the stores through their own doors (writes, deletes, repair rounds,
    copies quarantined on read), every summary a node gives equals a fresh walk of its listing."""
    async def check(mesh) -> None:
        for node in mesh.nodes.values():
            groups = [SyncGroup(p, partition) for p in ("france-only", "eu-wide") for partition in range(16)]
            groups += [SyncGroup(r.policy, bucket=r.name, generation=r.generation)
                       for r in await node.local.list_buckets()]
            for _ in range(2):  # the second ask is served from the cache
                given = await node.local.sync_summaries(groups)
                walked = [(listing_digest(items), len(items))
                          for items in [await node.local.sync_listing(g) for g in groups]]
                assert given == walked, node.node_id

    async def main(mesh) -> None:
        await mesh.create_bucket("scans", "france-only")
        digests: list[tuple[str, bytes]] = []
        for op, i, size in ops:
            if op == "put":
                m = await mesh.put("scans", f"k{i}", os.urandom(size))
                digests += [(n, c.digest) for c in m.chunks for n, node in mesh.nodes.items()
                            if node.local.chunks.has(c.digest)]
            elif op == "delete":
                await mesh.delete("scans", f"k{i}")
            elif op == "corrupt" and digests:
                node_id, digest = digests[i % len(digests)]
                local = mesh.nodes[node_id].local
                if local.chunks.has(digest):
                    path = local.chunks.path_of(digest)
                    raw = bytearray(path.read_bytes())
                    raw[-1] ^= 0xFF
                    path.write_bytes(bytes(raw))
                    with contextlib.suppress(Exception):
                        await local.get_chunk(digest)   # found corrupt on read: quarantined
            elif op == "repair":
                await mesh.repair(1)
            else:
                await check(mesh)
        await check(mesh)

    with tempfile.TemporaryDirectory() as root:
        mesh = InMemoryMesh(make_layout(), Path(root), timings=TIMINGS)
        try:
            run(main(mesh))
        finally:
            mesh.close()
