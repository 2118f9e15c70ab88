"""Keyed chunk names in-process: per (tenant, policy) names, dedup inside one tenant's policy only,
old unkeyed data still read, copies re-named with the destination's key."""

from __future__ import annotations

import random

import pytest

from maillage.proto.frame import chunk_digest, read_frame_header
from maillage.proto.naming import chunk_key
from maillage.proto.trust.access import AccessDoc, ensure_naming_secret
from maillage.storage import ChunkNotFound

from .conftest import run

CHUNK = 1024  # the in-memory mesh's chunk size
DATA = bytes(random.Random(7).randbytes(3 * CHUNK + 100))
PIECES = [DATA[i:i + CHUNK] for i in range(0, len(DATA), CHUNK)]


def _keyed(mesh) -> AccessDoc:
    doc = ensure_naming_secret(AccessDoc(), random.Random(1))
    mesh.push_access(doc)
    return doc


def _held(mesh, digest: bytes) -> list[str]:
    return [n for n, node in mesh.nodes.items() if node.local.chunks.has(digest)]


def test_two_tenants_storing_the_same_bytes_get_different_names(mesh) -> None:
    async def scenario():
        doc = _keyed(mesh)
        await mesh.create_bucket("hospital-scans", "france-only", owner="hospital")
        await mesh.create_bucket("hospital-more", "france-only", owner="hospital")
        await mesh.create_bucket("housing-files", "france-only", owner="housing")
        a = await mesh.put("hospital-scans", "a", DATA)
        b = await mesh.put("hospital-more", "b", DATA)
        c = await mesh.put("housing-files", "c", DATA)
        key = chunk_key(doc.naming_secret, "hospital", "france-only")
        assert [r.digest for r in a.chunks] == [chunk_digest(p, key) for p in PIECES]
        # same tenant, same policy: one name, so dedup still works
        assert [r.digest for r in a.chunks] == [r.digest for r in b.chunks]
        # another tenant: other names, no cross-tenant dedup
        assert not {r.digest for r in a.chunks} & {r.digest for r in c.chunks}
        # nothing is named (or findable) by the unkeyed digest
        for piece in PIECES:
            assert _held(mesh, chunk_digest(piece)) == []
            for node in mesh.nodes.values():
                with pytest.raises(ChunkNotFound):
                    await node.local.get_chunk(chunk_digest(piece))
        for ref in a.chunks:
            assert read_frame_header(await mesh.nodes[_held(mesh, ref.digest)[0]].local.get_chunk(ref.digest)).keyed
        for bucket, k in (("hospital-scans", "a"), ("hospital-more", "b"), ("housing-files", "c")):
            assert await mesh.get(bucket, k) == DATA
    run(scenario())


def test_another_policy_of_the_same_tenant_gets_other_names(mesh) -> None:
    async def scenario():
        _keyed(mesh)
        await mesh.create_bucket("fr-one", "france-only", owner="hospital")
        await mesh.create_bucket("eu-all", "eu-wide", owner="hospital")
        fr = await mesh.put("fr-one", "x", DATA)
        eu = await mesh.put("eu-all", "x", DATA)
        assert not {r.digest for r in fr.chunks} & {r.digest for r in eu.chunks}
    run(scenario())


def test_data_written_before_the_naming_secret_still_reads(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("scans", "france-only", owner="hospital")
        old = await mesh.put("scans", "old", DATA)
        assert [r.digest for r in old.chunks] == [chunk_digest(p) for p in PIECES]  # unkeyed
        _keyed(mesh)
        new = await mesh.put("scans", "new", DATA)
        assert not {r.digest for r in old.chunks} & {r.digest for r in new.chunks}
        assert await mesh.get("scans", "old") == DATA
        assert await mesh.get("scans", "new") == DATA
        await mesh.repair()
        assert await mesh.get("scans", "old") == DATA
    run(scenario())


@pytest.mark.parametrize("keyed_source", [True, False], ids=["keyed-source", "unkeyed-source"])
def test_a_copy_into_another_policy_renames_the_chunks_with_the_destination_key(mesh, keyed_source) -> None:
    async def scenario():
        if keyed_source:
            doc = _keyed(mesh)
        await mesh.create_bucket("eu-all", "eu-wide", owner="hospital")
        await mesh.create_bucket("fr-one", "france-only", owner="hospital")
        await mesh.create_bucket("fr-two", "france-only", owner="hospital")
        src = await mesh.put("eu-all", "src", DATA)
        if not keyed_source:
            doc = _keyed(mesh)
        copy = await mesh.copy("eu-all", "src", "fr-one", "copy", via="paris-1")
        fr_key = chunk_key(doc.naming_secret, "hospital", "france-only")
        assert [r.digest for r in copy.chunks] == [chunk_digest(p, fr_key) for p in PIECES]
        assert copy.etag == src.etag
        assert await mesh.get("fr-one", "copy") == DATA
        # same (tenant, policy): the copy keeps the names, nothing new is framed
        again = await mesh.copy("fr-one", "copy", "fr-two", "again", via="lyon-1")
        assert [r.digest for r in again.chunks] == [r.digest for r in copy.chunks]
        assert await mesh.get("fr-two", "again") == DATA
    run(scenario())
