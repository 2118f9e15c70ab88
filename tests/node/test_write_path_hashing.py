"""The write path hashes each chunk once where it is built (issue 27): the coordinator names and
frames it, its own store keeps that frame without hashing it again, and every other replica
verifies what it received. In process over real stores."""

from __future__ import annotations

import os

from maillage.proto import frame as wire

from .conftest import run


def test_a_chunk_is_verified_by_each_replica_that_received_it_not_by_the_one_that_built_it(mesh, monkeypatch):
    verified: list[bytes] = []
    real = wire.verify_frame

    def counting(frame, **kw):
        header = real(frame, **kw)
        verified.append(header.digest)
        return header
    monkeypatch.setattr(wire, "verify_frame", counting)

    async def scenario():
        await mesh.create_bucket("scans", "france-only")
        via = "paris-1"
        manifest = await mesh.put("scans", "big", os.urandom(100_000), via=via)
        return via, [ref.digest for ref in manifest.chunks]
    via, digests = run(scenario())
    holders = {d: mesh.chunk_holders(d) for d in digests}
    assert all(len(h) == 2 for h in holders.values())
    assert any(via in h for h in holders.values())       # the coordinator stored some itself
    for d, h in holders.items():
        assert verified.count(d) == len(h - {via}), (d.hex()[:12], sorted(h), verified.count(d))
