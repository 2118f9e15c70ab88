"""Repair under the chunk bound (issue 22, item 4), in process: a peer that serves a frame declaring
more than `MAX_CHUNK_PLAIN` (a hostile node's own software) gets nothing stored, and the round goes
on with the rest of its work."""

from __future__ import annotations

import os
import struct
import zlib

from maillage.proto.frame import CODEC_ZSTD, MAX_CHUNK_PLAIN

from .conftest import run

GIB = 1 << 30


def _declaring(digest: bytes, plain: int) -> bytes:
    """A 32-byte zstd-coded frame named `digest` that declares `plain` bytes (valid header CRC)."""
    payload = bytes(32)
    head = struct.pack(">4sBBHQQ32s8s", b"MLGF", 1, CODEC_ZSTD, 0, plain, len(payload), digest, bytes(8))
    return head + struct.pack(">I", zlib.crc32(head)) + payload


def test_repair_takes_no_frame_above_the_bound_from_a_peer_and_finishes_its_round(mesh, monkeypatch):
    async def main():
        await mesh.create_bucket("scans", "eu-wide")
        m = await mesh.put("scans", "k", os.urandom(3000))  # three chunks of the mesh's 1 KiB
        bombed, honest = m.chunks[0].digest, m.chunks[1].digest
        victim, hostile = sorted(mesh.chunk_holders(bombed))
        lost = [d for d in (bombed, honest) if victim in mesh.chunk_holders(d)]
        await mesh.nodes[victim].local.drop_chunks("eu-wide", lost)
        assert not any(victim in mesh.chunk_holders(d) for d in lost)
        real = mesh.nodes[hostile].local.get_chunk_with_tenant

        async def serve(digest: bytes) -> tuple[bytes, str]:
            if digest == bombed:
                return _declaring(digest, GIB), ""
            return await real(digest)
        monkeypatch.setattr(mesh.nodes[hostile].local, "get_chunk_with_tenant", serve)
        await mesh.repair(1, nodes=[victim])
        assert victim not in mesh.chunk_holders(bombed), "the frame above the bound was not stored"
        assert all(victim in mesh.chunk_holders(d) for d in lost if d != bombed), "the rest was repaired"
        assert mesh.nodes[victim].repairer.progress.rounds_completed == 1
        assert GIB > MAX_CHUNK_PLAIN
    run(main())
