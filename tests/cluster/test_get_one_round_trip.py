"""A GET in one round trip (issue 27): the coordinator answers GetObject with the manifest and the
chunk holding the first byte wanted; the SDK verifies that frame as any chunk and fetches only the
others. A frame that fails verification (a faulty or hostile coordinator) is fetched again from the
copies, never returned."""

from __future__ import annotations

import asyncio
import os

from maillage.client import AsyncClient

from .conftest import CHUNK

DATA = os.urandom(3 * CHUNK + 1000)


def _counting(client: AsyncClient) -> list[bytes]:
    """Record each chunk the SDK fetches itself (GetChunk), by digest."""
    fetched: list[bytes] = []
    fetch = client._fetch_chunk

    async def counted(bucket, policy, digest, key=None):
        fetched.append(digest)
        return await fetch(bucket, policy, digest, key)
    client._fetch_chunk = counted  # type: ignore[method-assign]
    return fetched


def test_the_first_chunk_wanted_comes_with_the_manifest(mesh):
    async def scenario() -> None:
        async with AsyncClient(profile=mesh.profile) as client:
            await client.create_bucket("onetrip", policy="france-only")
            await client.put_object("onetrip", "scan.bin", DATA)
            digests = [d for d, _ in await client.object_chunks("onetrip", "scan.bin")]
            assert len(digests) == 4
            fetched = _counting(client)
            assert await (await client.get_object("onetrip", "scan.bin")).read() == DATA
            assert fetched == digests[1:]                      # the first came with the manifest
            fetched.clear()
            body = await client.get_object("onetrip", "scan.bin", range=(2 * CHUNK + 5, 3 * CHUNK + 10))
            assert await body.read() == DATA[2 * CHUNK + 5:3 * CHUNK + 10]
            assert fetched == [digests[3]]                     # the range's first chunk came with it
    asyncio.run(scenario())


def test_a_frame_that_fails_verification_is_fetched_again_from_the_copies(mesh):
    async def scenario() -> None:
        async with AsyncClient(profile=mesh.profile) as client:
            await client.create_bucket("onetrip-bad", policy="france-only")
            await client.put_object("onetrip-bad", "scan.bin", DATA)
            digests = [d for d, _ in await client.object_chunks("onetrip-bad", "scan.bin")]
            body = await client.get_object("onetrip-bad", "scan.bin")
            index, frame = body._first
            assert index == 0 and frame
            body._first = (0, frame[:-1] + bytes([frame[-1] ^ 1]))   # one flipped bit in the payload
            fetched = _counting(client)
            assert await body.read() == DATA
            assert sorted(fetched) == sorted(digests)           # chunk 0 fetched again, and the rest
    asyncio.run(scenario())
