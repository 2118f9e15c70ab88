"""The one bound on a chunk (issue 22, item 4): a frame declaring more plain or stored bytes than
`limits.MAX_CHUNK_PLAIN` is refused by every reader of the frame codec from its header alone, before
anything is decompressed or allocated; the decoder also refuses a zstd window above the bound."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib
from collections.abc import Callable

import blake3
import grpc
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.service.reasons import reason_for
from maillage.proto import limits
from maillage.proto.frame import (
    CODEC_RAW,
    CODEC_ZSTD,
    FLAG_KEYED,
    MAX_CHUNK_PLAIN,
    CorruptFrame,
    FrameTooLarge,
    chunk_digest,
    decode_frame,
    encode_frame,
    read_frame_header,
    verify_frame,
)
from maillage.proto.reasons import Reason, status_of
from maillage.testing.examples import examples

KEY = bytes(range(32))
GIB = 1 << 30


def _frame(codec: int, flags: int, plain: int, stored: int, digest: bytes, payload: bytes) -> bytes:
    """A frame with any declared lengths around any payload, with a valid payload check and header
    CRC (a hostile sender can always compute both)."""
    check = blake3.blake3(payload).digest(length=8) if codec == CODEC_ZSTD or flags else bytes(8)
    prefix = struct.pack(">4sBBHQQ32s8s", b"MLGF", 1, codec, flags, plain, stored, digest, check)
    return prefix + struct.pack(">I", zlib.crc32(prefix)) + payload


def _bomb(plain: int = GIB) -> tuple[bytes, bytes]:
    """The attack of issue 22: a real zstd payload of `plain` zero bytes (32 KiB for 1 GiB, which
    declares its size), and the BLAKE3 of those bytes: a frame that is exactly what it says."""
    out = io.BytesIO()
    zeros = bytes(1 << 20)
    with zstandard.ZstdCompressor(level=1, write_content_size=True).stream_writer(out, size=plain, closefd=False) as w:
        for _ in range(plain >> 20):
            w.write(zeros)
    hasher = blake3.blake3()
    for _ in range(plain >> 20):
        hasher.update(zeros)
    return out.getvalue(), hasher.digest()


#: Every reader of the codec, with and without a naming key and an expected digest.
READERS: dict[str, Callable[[bytes], object]] = {
    "read_frame_header": read_frame_header,
    "verify_frame": verify_frame,
    "verify_frame keyed": lambda f: verify_frame(f, key=KEY),
    "decode_frame": decode_frame,
    "decode_frame keyed": lambda f: decode_frame(f, key=KEY),
    "decode_frame expecting": lambda f: decode_frame(f, expected_digest=f[24:56], key=KEY),
}


def _refused_without_allocating(frame: bytes, match: str) -> None:
    for name, reader in READERS.items():
        tracemalloc.start()
        try:
            with pytest.raises(FrameTooLarge, match=match):
                reader(frame)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 256 << 10, f"{name} allocated {peak} bytes before refusing"


def test_the_1_gib_bomb_of_issue_22_is_refused_by_every_reader_before_anything_is_allocated() -> None:
    payload, digest = _bomb()
    assert len(payload) < 64 << 10  # 32 KiB on the wire
    frame = _frame(CODEC_ZSTD, 0, GIB, len(payload), digest, payload)
    _refused_without_allocating(frame, f"declares {GIB} plain bytes, above the largest chunk any node takes "
                                       f"\\({MAX_CHUNK_PLAIN} bytes")


@given(plain=st.integers(MAX_CHUNK_PLAIN + 1, 2 ** 64 - 1), codec=st.sampled_from([CODEC_RAW, CODEC_ZSTD]),
       keyed=st.booleans(), payload=st.binary(max_size=2048), stored=st.none() | st.integers(0, 2 ** 64 - 1),
       digest=st.binary(min_size=32, max_size=32))
@settings(max_examples=examples(0.5), deadline=None)
def test_any_frame_declaring_more_plain_bytes_than_the_bound_is_refused_unread(
        plain: int, codec: int, keyed: bool, payload: bytes, stored: int | None, digest: bytes) -> None:
    # The stored length may match the payload or not (a truncated bomb): the size is refused first.
    frame = _frame(codec, FLAG_KEYED if keyed else 0, plain, len(payload) if stored is None else stored,
                   digest, payload)
    _refused_without_allocating(frame, f"declares {plain} plain bytes")


@given(plain=st.integers(0, MAX_CHUNK_PLAIN), stored=st.integers(MAX_CHUNK_PLAIN + 1, 2 ** 64 - 1),
       payload=st.binary(max_size=2048))
@settings(max_examples=examples(0.5), deadline=None)
def test_any_frame_declaring_more_stored_bytes_than_the_bound_is_refused_unread(
        plain: int, stored: int, payload: bytes) -> None:
    frame = _frame(CODEC_ZSTD, 0, plain, stored, chunk_digest(b""), payload)
    _refused_without_allocating(frame, f"declares {stored} stored bytes")


def test_a_chunk_of_exactly_the_bound_round_trips_and_one_byte_more_cannot_be_framed() -> None:
    plain = bytes(MAX_CHUNK_PLAIN)
    frame = encode_frame(plain)
    assert read_frame_header(frame).plain_length == MAX_CHUNK_PLAIN
    assert decode_frame(frame) == plain
    raw = encode_frame(os.urandom(1 << 16) * (MAX_CHUNK_PLAIN >> 16), level=0)  # stored raw: the largest frame
    assert verify_frame(raw).stored_length == MAX_CHUNK_PLAIN
    with pytest.raises(ValueError, match="largest chunk"):
        encode_frame(bytes(MAX_CHUNK_PLAIN + 1))


def test_a_zstd_window_above_the_bound_is_refused() -> None:
    """zstd sizes its buffer by the window a payload declares, before decoding a byte: a payload
    without a declared size and a 128 MiB window, behind a header saying 1000 bytes."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27, write_content_size=False)
    writer = zstandard.ZstdCompressor(compression_params=params).compressobj()
    plain = b"x" * 1000
    payload = writer.compress(plain) + writer.flush()
    assert zstandard.get_frame_parameters(payload).window_size > MAX_CHUNK_PLAIN
    frame = _frame(CODEC_ZSTD, 0, len(plain), len(payload), chunk_digest(plain), payload)
    for reader in (decode_frame, verify_frame):
        with pytest.raises(CorruptFrame, match="too much memory"):
            reader(frame)


def test_the_bound_is_one_value_and_the_chunk_size_check_uses_it() -> None:
    assert limits.MAX_CHUNK_PLAIN == MAX_CHUNK_PLAIN
    assert limits.DEFAULT_CHUNK_SIZE <= MAX_CHUNK_PLAIN
    # a raw frame of the largest chunk fits in a message of a node configured with that chunk size
    assert limits.max_request_message(MAX_CHUNK_PLAIN) >= MAX_CHUNK_PLAIN + 68
    assert limits.check_chunk_size(MAX_CHUNK_PLAIN) == MAX_CHUNK_PLAIN
    for bad in (0, -1, MAX_CHUNK_PLAIN + 1, GIB):
        with pytest.raises(ValueError, match="a chunk size is 1 to"):
            limits.check_chunk_size(bad)


def test_a_frame_too_large_leaves_both_doors_as_entity_too_large_invalid_argument() -> None:
    exc = FrameTooLarge("frame declares 1073741824 plain bytes")
    assert isinstance(exc, CorruptFrame)  # every caller that skips a corrupt copy skips it too
    assert reason_for(exc) is Reason.ENTITY_TOO_LARGE
    assert status_of(reason_for(exc)) is grpc.StatusCode.INVALID_ARGUMENT


def test_a_node_cannot_be_started_with_chunks_above_the_bound(capsys: pytest.CaptureFixture[str]) -> None:
    from maillage.cli.main import build_parser

    base = ["node", "run", "--id", "paris-1", "--data-dir", "d", "--trust-dir", "t"]
    parser = build_parser()
    assert parser.parse_args([*base, "--chunk-size", str(MAX_CHUNK_PLAIN)]).chunk_size == MAX_CHUNK_PLAIN
    assert parser.parse_args(base).chunk_size == limits.DEFAULT_CHUNK_SIZE
    for bad in (MAX_CHUNK_PLAIN + 1, GIB, 0):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--chunk-size", str(bad)])
        assert f"a chunk size is 1 to {MAX_CHUNK_PLAIN} bytes" in capsys.readouterr().err
