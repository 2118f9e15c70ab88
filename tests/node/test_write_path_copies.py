"""Copies and hash passes per chunk on the write path (issue 27, item 1), counted so they cannot creep
back. In process over real, encrypted stores; one chunk in flight so the counts are exact.

Per chunk, today: the chunker joins the pieces once, `encode_frame` joins header and payload, each
replica's seal (AES-GCM) writes the frame's bytes once more. BLAKE3 passes: the coordinator's
whole-object digest (the etag and the check of the client's), the keyed name, the frame's payload
check; each replica that received the frame verifies it once; the coordinator's own store none."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import pytest

from maillage.node.data import coordinator as coordinator_module
from maillage.node.data.chunking import FixedChunker
from maillage.node.data.coordinator import Upload, UploadStream
from maillage.proto.trust.access import AccessDoc, ensure_naming_secret
from maillage.testing.inmemory import InMemoryMesh

from .conftest import TIMINGS, make_layout

CHUNK = 1 << 20
PIECE = 256 << 10  # four messages per chunk, as the SDK's 1 MiB messages are four per 4 MiB chunk
CHUNKS = 8
LARGE = 64 << 10   # allocations counted: a step of the traced memory at least this large


class _Allocations:
    """Bytes allocated in large steps, as tracemalloc sees the process's memory grow between any two
    profiler events of any thread. A copy into a buffer allocated before (and reused) is not seen,
    so this is a lower bound of the bytes copied; every copy into a new buffer is."""

    def __init__(self) -> None:
        self.large = 0
        self._last = 0

    def _event(self, frame, event, arg) -> None:
        now = tracemalloc.get_traced_memory()[0]
        if now - self._last >= LARGE:
            self.large += now - self._last
        self._last = now


@contextmanager
def _counting_allocations() -> Iterator[_Allocations]:
    allocations = _Allocations()
    tracemalloc.start()
    allocations._last = tracemalloc.get_traced_memory()[0]
    threading.setprofile(allocations._event)  # threads made from now on: the mesh's pools
    sys.setprofile(allocations._event)
    try:
        yield allocations
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        tracemalloc.stop()


class _CountingBlake3:
    """blake3.blake3 that adds every byte it hashes to `hashed`."""

    hashed = 0
    real = blake3.blake3

    def __init__(self, data=b"", **kw) -> None:
        self._h = _CountingBlake3.real(**kw)
        if len(data):
            self.update(data)

    def update(self, data) -> _CountingBlake3:
        _CountingBlake3.hashed += len(data)
        self._h.update(data)
        return self

    def digest(self, *args, **kw) -> bytes:
        return self._h.digest(*args, **kw)

    def hexdigest(self, *args, **kw) -> str:
        return self._h.hexdigest(*args, **kw)


def test_a_chunk_is_copied_twice_and_hashed_three_times_by_its_coordinator(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(coordinator_module, "CHUNKS_IN_FLIGHT", 1)
    monkeypatch.setattr(_CountingBlake3, "hashed", 0)
    data = os.urandom(CHUNKS * CHUNK)
    view = memoryview(data)
    via = "paris-1"

    async def pieces():  # as the gRPC door yields them: views of the messages received
        for i in range(0, len(data), PIECE):
            yield view[i:i + PIECE]

    with _counting_allocations() as allocations:
        mesh = InMemoryMesh(make_layout(), tmp_path, timings=TIMINGS, encrypted=True, chunk_size=CHUNK)
        try:
            async def scenario():
                mesh.push_access(ensure_naming_secret(AccessDoc(), random.Random(1)))  # keyed names
                await mesh.create_bucket("scans", "france-only")
                coordinator = mesh.via(via).coordinator
                record = await coordinator.head_bucket("scans")
                copied, hashed = allocations.large, _CountingBlake3.hashed
                monkeypatch.setattr(blake3, "blake3", _CountingBlake3)
                manifest, _ = await coordinator.put_object(record, Upload("big"), UploadStream(pieces()))
                monkeypatch.setattr(blake3, "blake3", _CountingBlake3.real)
                return manifest, allocations.large - copied, _CountingBlake3.hashed - hashed
            manifest, copied, hashed = asyncio.run(scenario())
            holders = [{n for n, node in mesh.nodes.items() if node.local.chunks.has(ref.digest)}
                       for ref in manifest.chunks]
        finally:
            mesh.close()
    assert len(manifest.chunks) == CHUNKS and all(len(h) == 2 for h in holders)
    assert any(via in h for h in holders)  # the coordinator stored some chunks itself
    # per chunk, in chunk sizes: the copies beside the seals (one at each replica: AES-GCM's output)
    # are the chunker's join and the frame's (the old chunker's slice and bytes() of the slice made 3)
    copies = (copied - sum(len(h) for h in holders) * CHUNK) / (CHUNKS * CHUNK)
    assert copies < 2.15, f"{copies:.2f} copies per chunk beside the seals, 2 expected"
    # hash passes: 3 at the coordinator, 1 at each replica that received the frame, 0 at its own store
    passes = (hashed - sum(len(h - {via}) for h in holders) * CHUNK) / (CHUNKS * CHUNK)
    assert passes < 3.05, f"{passes:.2f} BLAKE3 passes per chunk at the coordinator, 3 expected"


def test_the_chunker_copies_each_byte_once() -> None:
    pieces = [os.urandom(PIECE) for _ in range(2 * CHUNK // PIECE + 1)]
    chunker = FixedChunker(CHUNK)
    tracemalloc.start()
    try:
        chunks = []
        for piece in pieces:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            chunks += chunker.feed(memoryview(piece)[: PIECE - 1])
            chunks += chunker.feed(memoryview(piece)[PIECE - 1:])
            # no buffer beside the chunk it may complete (the old one held 3: buffer, slice, bytes())
            assert tracemalloc.get_traced_memory()[1] - before < CHUNK + (64 << 10)
    finally:
        tracemalloc.stop()
    assert [type(c) for c in chunks] == [bytes, bytes]
    assert b"".join([*chunks, chunker.rest()]) == b"".join(pieces)


@pytest.mark.parametrize("kind", [lambda b: b, memoryview, lambda b: memoryview(b).toreadonly()])
def test_the_chunker_copies_a_piece_its_producer_may_change(kind) -> None:
    chunker = FixedChunker(8)
    buffer = bytearray(b"abcd")
    assert chunker.feed(kind(buffer)) == []
    buffer[:] = b"WXYZ"
    assert chunker.feed(b"efgh") == [b"abcdefgh"]


def test_a_piece_that_is_a_whole_chunk_is_not_copied() -> None:
    chunker = FixedChunker(4)
    piece = b"abcd"
    assert chunker.feed(piece)[0] is piece
    assert chunker.feed(b"ab") == [] and chunker.rest() == b"ab" and chunker.rest() == b""
