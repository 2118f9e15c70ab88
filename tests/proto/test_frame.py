"""Frame format: round trips, compression choice, and rejection of every malformed frame."""

from __future__ import annotations

import os
import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.proto import frame as frame_module
from maillage.proto.frame import (
    CODEC_RAW,
    CODEC_ZSTD,
    FRAME_HEADER_SIZE,
    MAX_CHUNK_PLAIN,
    SAMPLE_ABOVE,
    CorruptFrame,
    chunk_digest,
    decode_frame,
    encode_frame,
    read_frame_header,
    verify_frame,
)
from maillage.testing.examples import examples

compressible = st.builds(
    lambda word, n: word * n, st.binary(min_size=1, max_size=16), st.integers(1, 4000)
)
anything = st.one_of(st.binary(max_size=20_000), compressible)


@given(anything, st.sampled_from([0, 1, 3, 9]))
@settings(max_examples=examples(2), deadline=None)
def test_round_trip(data: bytes, level: int) -> None:
    frame = encode_frame(data, level=level)
    header = read_frame_header(frame)
    assert header.digest == chunk_digest(data)
    assert header.plain_length == len(data)
    assert len(frame) == FRAME_HEADER_SIZE + header.stored_length
    assert decode_frame(frame) == data
    assert decode_frame(memoryview(frame), expected_digest=chunk_digest(data)) == data
    if header.codec == CODEC_ZSTD:
        assert header.stored_length < len(data)
    else:
        assert header.stored_length == len(data)


def test_compressible_data_is_compressed() -> None:
    data = b"the quick brown fox jumps over the lazy dog " * 10_000
    h = read_frame_header(encode_frame(data))
    assert h.codec == CODEC_ZSTD
    assert h.stored_length < len(data) // 10


def test_incompressible_data_is_stored_raw() -> None:
    data = os.urandom(1 << 20)
    frame = encode_frame(data)
    h = read_frame_header(frame)
    assert h.codec == CODEC_RAW
    assert frame[FRAME_HEADER_SIZE:] == data


def test_level_zero_disables_compression() -> None:
    assert read_frame_header(encode_frame(b"a" * 1000, level=0)).codec == CODEC_RAW


def _every_bit_flip(frame: bytes):
    buf = bytearray(frame)
    for i in range(len(buf)):
        for bit in range(8):
            buf[i] ^= 1 << bit
            yield i, bit, bytes(buf)
            buf[i] ^= 1 << bit


@pytest.mark.parametrize(
    "data",
    [b"hello world, hello world, hello world, hello world " * 4, os.urandom(96), b""],
    ids=["zstd", "raw", "empty"],
)
def test_every_single_bit_flip_is_rejected(data: bytes) -> None:
    frame = encode_frame(data)
    flips = 0
    for i, bit, bad in _every_bit_flip(frame):
        with pytest.raises(CorruptFrame):
            decode_frame(bad)
            pytest.fail(f"flip of bit {bit} in byte {i} was accepted")
        flips += 1
    assert flips == 8 * len(frame)


@given(anything, st.data())
@settings(deadline=None)
def test_random_bit_flips_rejected(data: bytes, draw: st.DataObject) -> None:
    frame = bytearray(encode_frame(data))
    pos = draw.draw(st.integers(0, len(frame) - 1))
    frame[pos] ^= 1 << draw.draw(st.integers(0, 7))
    with pytest.raises(CorruptFrame):
        decode_frame(bytes(frame))


@pytest.mark.parametrize("data", [b"abc" * 500, os.urandom(300)], ids=["zstd", "raw"])
def test_every_truncation_and_extension_is_rejected(data: bytes) -> None:
    frame = encode_frame(data)
    for n in range(len(frame)):
        with pytest.raises(CorruptFrame):
            decode_frame(frame[:n])
    for extra in (b"\x00", b"x" * 7):
        with pytest.raises(CorruptFrame, match="length"):
            decode_frame(frame + extra)


def _rebuild(frame: bytes, **fields: int | bytes) -> bytes:
    """Re-pack a header with some fields changed and a VALID crc, to test the field checks."""
    fmt = struct.Struct(">4sBBHQQ32s8s")
    names = ["magic", "version", "codec", "flags", "plain", "stored", "digest", "check"]
    values = dict(zip(names, fmt.unpack_from(frame)))
    values.update(fields)
    prefix = fmt.pack(*(values[n] for n in names))
    return prefix + struct.pack(">I", zlib.crc32(prefix)) + frame[FRAME_HEADER_SIZE:]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"magic": b"NOPE"}, "magic"),
        ({"version": 2}, "version"),
        ({"version": 0}, "version"),
        ({"codec": 7}, "codec"),
        ({"flags": 1}, "flags"),
        ({"stored": 3}, "length"),
        ({"plain": 1 << 40}, "above the largest chunk"),
    ],
)
def test_header_fields_are_checked(change: dict, message: str) -> None:
    frame = encode_frame(b"payload " * 100)
    with pytest.raises(CorruptFrame, match=message):
        read_frame_header(_rebuild(frame, **change))


def test_wrong_plain_length_is_rejected_even_with_a_valid_header_crc() -> None:
    frame = encode_frame(b"payload " * 100)
    bad = _rebuild(frame, plain=read_frame_header(frame).plain_length - 1)
    read_frame_header(bad)  # the header itself is consistent
    with pytest.raises(CorruptFrame):
        decode_frame(bad)


def test_raw_frame_with_mismatched_lengths_is_rejected() -> None:
    frame = encode_frame(os.urandom(64))
    with pytest.raises(CorruptFrame):
        read_frame_header(_rebuild(frame, plain=63))


def test_forged_digest_with_valid_crc_is_rejected() -> None:
    frame = encode_frame(os.urandom(64))
    forged = _rebuild(frame, digest=chunk_digest(b"something else"))
    with pytest.raises(CorruptFrame, match="BLAKE3"):
        decode_frame(forged)


def test_expected_digest_is_enforced() -> None:
    frame = encode_frame(b"abc")
    with pytest.raises(CorruptFrame, match="expected"):
        decode_frame(frame, expected_digest=chunk_digest(b"abd"))
    assert verify_frame(frame, expected_digest=chunk_digest(b"abc")).plain_length == 3


def test_not_a_frame() -> None:
    with pytest.raises(CorruptFrame, match="too short"):
        read_frame_header(b"hello")
    with pytest.raises(CorruptFrame, match="magic"):
        read_frame_header(b"x" * 200)


def test_encode_rejects_bad_digest_argument() -> None:
    with pytest.raises(ValueError):
        encode_frame(b"abc", digest=b"short")


# ----- bounded decompression (issue 14, case 5) ---------------------------------------------------

def _zstd_frame(payload: bytes, plain_length: int, digest: bytes) -> bytes:
    """A frame around any zstd `payload`, with a valid payload check and header CRC (as a hostile
    sender can always compute them)."""
    import blake3

    prefix = struct.pack(">4sBBHQQ32s8s", b"MLGF", 1, CODEC_ZSTD, 0, plain_length, len(payload), digest,
                         blake3.blake3(payload).digest(length=8))
    return prefix + struct.pack(">I", zlib.crc32(prefix)) + payload


def _with_declared_size(zframe: bytes, size: int) -> bytes:
    """`zframe` (a zstd frame with a 4-byte content size field) claiming `size` plain bytes."""
    fhd = zframe[4]
    assert fhd >> 6 == 2 and fhd & 3 == 0, "expected a 4-byte content size field and no dictionary id"
    at = 5 if fhd & 0x20 else 6  # single segment: no window descriptor
    return zframe[:at] + struct.pack("<I", size) + zframe[at + 4:]


def _bomb(declared: int = 2 << 30) -> tuple[bytes, bytes]:
    """A small zstd payload whose own header declares `declared` plain bytes, and its true plain."""
    import zstandard

    plain = bytes(1 << 20)
    zframe = zstandard.ZstdCompressor(level=1, write_content_size=True).compress(plain)
    return _with_declared_size(zframe, declared), plain


def _peak_during(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("check", [decode_frame, verify_frame], ids=["decode", "verify"])
def test_a_payload_declaring_2_gib_is_refused_before_anything_is_allocated(check) -> None:
    payload, plain = _bomb(2 << 30)
    frame = _zstd_frame(payload, len(plain), chunk_digest(plain))

    def refuse() -> None:
        with pytest.raises(CorruptFrame, match="declares 2147483648 plain bytes, frame header says 1048576"):
            check(frame)

    assert _peak_during(refuse) < 4 << 20


def test_a_payload_declaring_less_than_the_header_is_refused() -> None:
    payload, plain = _bomb(1000)
    frame = _zstd_frame(payload, len(plain), chunk_digest(plain))
    for check in (decode_frame, verify_frame):
        with pytest.raises(CorruptFrame, match="declares 1000 plain bytes"):
            check(frame)


def test_a_header_declaring_2_gib_is_refused() -> None:
    payload, plain = _bomb(2 << 30)
    frame = _zstd_frame(payload, 2 << 30, chunk_digest(plain))
    for check in (decode_frame, verify_frame, read_frame_header):
        with pytest.raises(CorruptFrame, match="above the largest chunk"):
            check(frame)


def _unsized(plain: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=1, write_content_size=False).compress(plain)


@given(anything)
@settings(deadline=None)
def test_a_payload_without_a_declared_size_decodes_within_the_header_length(data: bytes) -> None:
    frame = _zstd_frame(_unsized(data), len(data), chunk_digest(data))
    assert decode_frame(frame) == data
    assert verify_frame(frame).plain_length == len(data)


@given(anything.filter(len), st.integers(1, 1000))
@settings(deadline=None)
def test_an_unsized_payload_longer_than_the_header_says_is_refused(data: bytes, cut: int) -> None:
    short = max(0, len(data) - cut)
    frame = _zstd_frame(_unsized(data), short, chunk_digest(data[:short]))
    for check in (decode_frame, verify_frame):
        with pytest.raises(CorruptFrame):
            check(frame)


def test_an_unsized_bomb_is_capped_at_the_header_length() -> None:
    import zstandard

    # 256 MiB of zeros without a declared size, behind a header that says 1 MiB.
    writer_out = __import__("io").BytesIO()
    with zstandard.ZstdCompressor(level=1, write_content_size=False).stream_writer(
            writer_out, closefd=False) as w:
        zeros = bytes(1 << 20)
        for _ in range(256):
            w.write(zeros)
    payload = writer_out.getvalue()
    assert len(payload) < 64 << 10
    frame = _zstd_frame(payload, 1 << 20, chunk_digest(bytes(1 << 20)))
    for check in (decode_frame, verify_frame):
        def refuse(check=check) -> None:
            with pytest.raises(CorruptFrame):
                check(frame)
        assert _peak_during(refuse) < 8 << 20


def test_verify_streams_large_chunks_through_the_hash() -> None:
    plain = b"maillage " * (MAX_CHUNK_PLAIN // 9)  # the largest chunk (16 MiB), compresses well
    frame = encode_frame(plain)
    assert read_frame_header(frame).codec == CODEC_ZSTD
    peak = _peak_during(lambda: verify_frame(frame))
    assert peak < 4 << 20  # never the 16 MiB of plain bytes


# ----- sampling before compressing a large chunk ---------------------------------------------------

def _noise(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)  # incompressible, and the same bytes on a replay


segments = st.lists(
    st.one_of(st.binary(min_size=1, max_size=64).map(lambda w: w * (40_000 // len(w) + 1)),
              st.tuples(st.integers(0, 2 ** 32), st.integers(1, 80_000)).map(lambda a: _noise(*a))),
    min_size=1, max_size=12)


@given(segments)
@settings(max_examples=examples(0.4), deadline=None)
def test_large_chunks_round_trip_whatever_the_samples_decide(parts: list[bytes]) -> None:
    data = b"".join(parts) + _noise(0, SAMPLE_ABOVE)  # above the sampling size, mixed content
    frame = encode_frame(data)
    header = read_frame_header(frame)
    assert decode_frame(frame, expected_digest=chunk_digest(data)) == data
    assert (header.stored_length < len(data)) if header.codec == CODEC_ZSTD else header.stored_length == len(data)


def _compressed_lengths(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = frame_module._compressor

    class Recording:
        def __init__(self, level: int) -> None:
            self._inner = real(level)

        def compress(self, data: bytes | memoryview) -> bytes:
            seen.append(len(data))
            return self._inner.compress(data)

    monkeypatch.setattr(frame_module, "_compressor", Recording)
    return seen


def test_a_large_incompressible_chunk_is_not_compressed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _compressed_lengths(monkeypatch)
    data = os.urandom(4 << 20)
    assert read_frame_header(encode_frame(data)).codec == CODEC_RAW
    assert seen and max(seen) < SAMPLE_ABOVE  # only the samples went through zstd


def test_a_large_compressible_chunk_is_compressed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _compressed_lengths(monkeypatch)
    data = b"patient record 0042; ward B; " * 150_000
    header = read_frame_header(encode_frame(data))
    assert header.codec == CODEC_ZSTD and header.stored_length < len(data) // 10
    assert len(data) in seen
