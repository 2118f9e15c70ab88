"""A hostile node's decompression bomb against real nodes (issue 22, item 4): frames are bounded
where they are read, not only where they are written.

The attack as it was found: munich-1's certificate (a legitimate German node of the layout) sent a
32 KiB frame declaring 1 GiB of plain bytes with PutChunk, every node took it, and a manifest
pointing an object at it made three concurrent reads push a node from 116 MiB to 15.5 GiB. Here the
frame is refused by every node (INVALID_ARGUMENT, reason EntityTooLarge, the sizes in words); an
object a forged manifest points at it, and an object whose held chunk files were replaced by such
frames at rest (as if stored before the bound), make concurrent reads and copies fail cleanly while
every node stays small."""

from __future__ import annotations

import io
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import grpc
import pytest
import zstandard

from maillage.client import Client, MaillageError
from maillage.placement import bucket_partition, partition_table
from maillage.proto import bulk, pb, rpc
from maillage.proto.channels import open_blocking_channel
from maillage.proto.frame import CODEC_ZSTD, MAX_CHUNK_PLAIN
from maillage.proto.reasons import Reason, reason_of
from maillage.proto.trust.identity import TlsIdentity
from maillage.storage import ChunkStore

from .conftest import CHUNK
from .helpers import newest_manifest

HOSTILE = "munich-1"  # eu-wide allows Germany: the node is eligible for the bucket it attacks
GIB = 1 << 30
READERS = 4  # of each kind: two of each object
GROWTH = 160 * 1024 * 1024  # three readers of chunks within the bound, and the allocator's slack


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _bomb() -> tuple[bytes, bytes]:
    """(digest, frame): 1 GiB of zeros as zstd (32 KiB; its payload declares the size) in a frame
    that is exactly what it says, with a valid digest, payload check and header CRC."""
    zeros, out, hasher = bytes(1 << 20), io.BytesIO(), blake3.blake3()
    with zstandard.ZstdCompressor(level=1).stream_writer(out, size=GIB, closefd=False) as writer:
        for _ in range(GIB >> 20):
            writer.write(zeros)
            hasher.update(zeros)
    payload = out.getvalue()
    head = struct.pack(">4sBBHQQ32s8s", b"MLGF", 1, CODEC_ZSTD, 0, GIB, len(payload), hasher.digest(),
                       blake3.blake3(payload).digest(length=8))
    return hasher.digest(), head + struct.pack(">I", zlib.crc32(head)) + payload


def _named(frame: bytes, digest: bytes) -> bytes:
    """`frame` with another chunk's name in its header (and the header CRC made again)."""
    head = frame[:24] + digest + frame[56:64]
    return head + struct.pack(">I", zlib.crc32(head)) + frame[68:]


def _as_hostile(mesh, target: str) -> grpc.Channel:
    """A channel to `target` presenting the hostile node's own certificate."""
    return open_blocking_channel(mesh.address(target), tls=TlsIdentity.load_node(mesh.trust_dir(HOSTILE)),
                                 peer=target)


def test_a_frame_declaring_1_gib_is_refused_and_readers_of_one_at_rest_stay_small(mesh):
    started = time.monotonic()
    others = [n.id for n in mesh.layout.nodes if n.id != HOSTILE]
    digest, frame = _bomb()
    assert len(frame) < 64 << 10 and GIB > MAX_CHUNK_PLAIN > CHUNK

    # 1. PutChunk from the hostile node: refused by every node, with the sizes in words.
    for target in others:
        with _as_hostile(mesh, target) as channel:
            put_chunk = channel.unary_unary(bulk.PUT_CHUNK, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as refused:
                put_chunk(frame, timeout=10, metadata=((bulk.POLICY_KEY, "eu-wide"), (bulk.TENANT_KEY, "demo")))
        err = refused.value
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, (target, err.code(), err.details())
        assert reason_of(err) is Reason.ENTITY_TOO_LARGE, target
        assert f"declares {GIB} plain bytes, above the largest chunk any node takes ({MAX_CHUNK_PLAIN}" \
            in err.details(), err.details()
        assert not ChunkStore.path_in(mesh.data_dir(target) / "chunks", digest).exists()

    # 2. A manifest naming it, written on the bucket's index owners with the node-plane PutManifest.
    with Client(profile=mesh.profile) as c:
        c.create_bucket("bombs", "eu-wide")
        c.create_bucket("bombs-fr", "france-only")
        c.put_object("bombs", "template", b"t" * CHUNK + b"u" * CHUNK)
        table = partition_table(c.layout(), "eu-wide")
    owners = table.replicas(bucket_partition("bombs", table.bits))
    # read from every owner, the newest: the write needed a quorum of the owners, not each of them
    # (a fresh-clone CI met an owner stood in for while the mesh started: its manifest came back empty)
    template = newest_manifest(mesh, owners, "bombs", "template")
    for target in owners:
        with _as_hostile(mesh, target) as channel:
            stub = rpc.ReplicaStub(channel)
            forged = pb.Manifest()
            forged.CopyFrom(template)
            forged.key, forged.size, forged.version = "bomb.bin", GIB, template.version + 1
            del forged.chunks[:]
            forged.chunks.append(pb.ChunkRef(digest=digest, length=GIB))
            assert stub.PutManifest(pb.PutManifestRequest(manifest=forged), timeout=10).applied

    # 3. A frame above the bound at rest (a node that stored it before the bound, or damage): the
    #    held chunk files of an honest object are replaced by bombs naming those chunks. Refused on
    #    read with the sizes in words, and quarantined.
    held = {}
    template_chunks = [ref.digest for ref in template.chunks]
    for node in mesh.layout.nodes:
        for chunk in template_chunks:
            path = ChunkStore.path_in(mesh.data_dir(node.id) / "chunks", chunk)
            if path.exists():
                path.write_bytes(_named(frame, chunk))  # a plain frame file: still read, as before encryption
                held[node.id, chunk] = path
    assert {chunk for _, chunk in held} == set(template_chunks), "every chunk is held somewhere"
    (target, chunk), path = next(iter(held.items()))
    with _as_hostile(mesh, target) as channel:
        get_chunk = channel.unary_unary(bulk.GET_CHUNK, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as refused:
            get_chunk(bulk.chunk_request(chunk), timeout=10)
    assert refused.value.code() is grpc.StatusCode.DATA_LOSS, refused.value.details()
    assert f"declares {GIB} plain bytes, above the largest chunk any node takes" in refused.value.details()
    assert not path.exists() and list((mesh.data_dir(target) / "chunks" / "quarantine").glob(chunk.hex() + ".*"))

    # 4. Readers: concurrent GETs of the object (the SDK's chunk reads) and copies of it into a
    #    France-only bucket (the node decodes: another policy's chunk key), of the object naming
    #    the bomb and of the one whose chunks are bombs at rest, while every node's memory is
    #    sampled. Each fails cleanly; no node grows by more than a few chunks.
    pids = {n.id: mesh.processes[n.id].pid for n in mesh.layout.nodes}
    before = {n: _rss(pid) for n, pid in pids.items()}
    peak = dict(before)

    def get(i: int) -> str:
        with Client(profile=mesh.profile) as c:
            try:
                c.get_object("bombs", ("bomb.bin", "template")[i % 2]).read()
            except MaillageError as exc:
                return type(exc).__name__
        return "served"

    def copy(i: int) -> str:
        with Client(profile=mesh.profile) as c:
            try:
                c.copy_object("bombs", ("bomb.bin", "template")[i % 2], "bombs-fr", f"copy-{i}")
            except MaillageError as exc:
                return type(exc).__name__
        return "copied"

    with ThreadPoolExecutor(2 * READERS) as pool:
        futures = [pool.submit(get, i) for i in range(READERS)] + [pool.submit(copy, i) for i in range(READERS)]
        while not all(f.done() for f in futures):
            for n, pid in pids.items():
                peak[n] = max(peak[n], _rss(pid))
            time.sleep(0.05)  # the sampling period of the nodes' RSS, not a wait for a result
        outcomes = [f.result() for f in futures]
    assert not {"served", "copied"} & set(outcomes), outcomes
    growth = {n: peak[n] - before[n] for n in pids}
    assert max(growth.values()) < GROWTH, {n: f"{g / 2**20:.0f} MiB" for n, g in growth.items()}
    assert all(mesh.processes[n].poll() is None for n in pids), "every node survived"
    assert time.monotonic() - started < 20
