"""Frames: how one chunk is stored on disk and sent over the wire.

A frame is a fixed 68-byte header followed by the payload::

    offset size field
    0      4    magic  b"MLGF"
    4      1    format version (1)
    5      1    codec: 0 = raw, 1 = zstd
    6      2    flags: bit 1 = FLAG_KEYED (the digest is keyed, see ``naming.py``); others must be 0
    8      8    plain length   (u64, big endian)
    16     8    stored length  (u64, payload bytes that follow the header)
    24     32   BLAKE3 digest of the PLAIN bytes (keyed when FLAG_KEYED): the chunk's name
    56     8    payload check: first 8 bytes of BLAKE3(payload) for zstd and for keyed raw frames,
                zeros for unkeyed raw frames
    64     4    CRC-32 of bytes 0..63

Why this shape:

* The digest covers the plain bytes, so a chunk keeps its name whatever codec a node picked, and a
  reader (the SDK included) verifies end to end after decompressing.
* The header CRC lets :func:`read_frame_header` reject a damaged header without touching the
  payload, so a reader never trusts a flipped length or digest field.
* zstd decoders ignore a few bits of their own frame header, so a flipped payload bit could decode
  to the right bytes and go unnoticed. The payload check closes that gap for compressed frames;
  unkeyed raw payloads are the plain bytes, already covered by the digest. "Every single-bit flip
  is rejected" is therefore a property, and the tests check it exhaustively on small frames.
* Keyed names (``FLAG_KEYED``): the digest is ``BLAKE3(plain, key=K)`` with K of the bucket's
  (tenant, policy) (``naming.py``), so only a holder of K can check it: the SDK (which asks for
  the key of a bucket it may read) and the coordinator that made it. A node storing or scrubbing
  a keyed frame has no K: :func:`verify_frame` without a key checks everything else (header CRC,
  lengths, payload check, decompression), and keyed raw frames carry a payload check too, so
  damage at rest or on the wire is still caught. :func:`decode_frame` refuses a keyed frame
  without its key: plain bytes are never returned unverified. Unkeyed frames (flag 0, written
  before names were keyed) stay valid and are checked with the unkeyed digest whatever the key.
* zstd is used only when the compressed payload is smaller than the plain one; incompressible data
  is stored raw and costs one BLAKE3 pass to verify.
* Every reader is bounded by the codec itself, not by its callers: :func:`read_frame_header` (and so
  :func:`verify_frame` and :func:`decode_frame`, which start with it) refuses a frame whose plain
  or stored length exceeds ``limits.MAX_CHUNK_PLAIN``, the largest chunk any node may be configured
  with (:class:`FrameTooLarge`). A 32 KiB zstd bomb declaring 1 GiB is therefore refused on
  PutChunk, on repair, on every read and at rest before a byte is decompressed.
* Lengths are checked against the buffer before anything is allocated, and decompression is
  bounded by the header's plain length, so a hostile frame cannot make a node allocate gigabytes:
  the content size a zstd payload declares in its own frame header must equal the plain length
  (python-zstandard allocates what the payload declares and ignores ``max_output_size`` then); a
  payload that declares no size is decoded with a hard output cap, and the decoder refuses a zstd
  window above the bound (its buffer is allocated before the first byte is decoded).
  :func:`verify_frame` streams the decompression through the hash in pieces of ``_VERIFY_PIECE``
  bytes and never holds the plain bytes at all.

Hashing and zstd release the GIL; callers on an event loop should run these in a thread pool.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import blake3
import zstandard

from maillage.proto.limits import MAX_CHUNK_PLAIN

__all__ = [
    "CorruptFrame",
    "FrameTooLarge",
    "DIGEST_SIZE",
    "FRAME_HEADER_SIZE",
    "FRAME_MAGIC",
    "FRAME_VERSION",
    "CODEC_RAW",
    "CODEC_ZSTD",
    "FLAG_KEYED",
    "SAMPLE_ABOVE",
    "MAX_CHUNK_PLAIN",
    "FrameHeader",
    "chunk_digest",
    "encode_frame",
    "read_frame_header",
    "decode_frame",
    "verify_frame",
]



class CorruptFrame(Exception):
    """A frame is malformed or its content does not match its digest (on the wire or on disk)."""


class FrameTooLarge(CorruptFrame):
    """A frame declares more plain or stored bytes than any chunk may hold (``MAX_CHUNK_PLAIN``):
    refused from its header alone, before anything is read further or allocated."""


DIGEST_SIZE = 32
FRAME_MAGIC = b"MLGF"
FRAME_VERSION = 1
CODEC_RAW = 0
CODEC_ZSTD = 1
_CODECS = (CODEC_RAW, CODEC_ZSTD)
#: Header flag: the digest is BLAKE3 keyed with the (tenant, policy) naming key. Bit 1, not bit 0:
#: nothing ever wrote bit 0, and keeping it unknown keeps one more reserved value for later.
FLAG_KEYED = 0x0002

_PREFIX = struct.Struct(">4sBBHQQ32s8s")  # everything the CRC covers
_CRC = struct.Struct(">I")
FRAME_HEADER_SIZE = _PREFIX.size + _CRC.size  # 68
_CHECK_SIZE = 8
_NO_CHECK = bytes(_CHECK_SIZE)

_local = threading.local()
#: Verification decompresses and hashes this many plain bytes at a time.
_VERIFY_PIECE = 1 << 20


@dataclass(frozen=True)
class FrameHeader:
    """The validated header of a frame."""

    version: int
    codec: int
    digest: bytes
    plain_length: int
    stored_length: int
    keyed: bool = False



def chunk_digest(data: bytes | memoryview, key: bytes | None = None) -> bytes:
    """The 32-byte BLAKE3 digest that names a chunk: keyed with ``key`` (K of the bucket's tenant
    and policy, ``naming.chunk_key``) when one is given, unkeyed otherwise."""
    if key is None:
        return blake3.blake3(data).digest()
    return blake3.blake3(data, key=key).digest()


def _hasher(key: bytes | None) -> blake3.blake3:
    return blake3.blake3() if key is None else blake3.blake3(key=key)


def _payload_check(payload: bytes | memoryview) -> bytes:
    return blake3.blake3(payload).digest(length=_CHECK_SIZE)


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        # A zstd window above the bound is refused: the decoder sizes its buffer by the window
        # before it decodes a byte, and no frame of a chunk within the bound needs a larger one.
        d = _local.decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_CHUNK_PLAIN)
    return d


#: Chunks larger than this are sampled before zstd runs over all of them.
SAMPLE_ABOVE = 256 * 1024
_SAMPLE = 16 * 1024
_SAMPLE_MIN_SAVING = 0.03


def _may_compress(plain: bytes | memoryview, level: int) -> bool:
    """Whether a chunk is worth compressing whole, judged from four 16 KiB samples spread over it.

    Random, encrypted and already compressed data (media, restic and other backups) is the common
    case for large chunks, and zstd spends ~5 ms of CPU on each 4 MiB of it to find nothing: the
    samples cost ~0.1 ms. A chunk whose samples save under 3 % is stored raw; one with a compressible
    region the samples all miss loses that saving (it stays correct: raw is always a valid codec)."""
    n = len(plain)
    if n <= SAMPLE_ABOVE:
        return True
    view = memoryview(plain)
    step = (n - _SAMPLE) // 3
    sample = b"".join(view[i * step:i * step + _SAMPLE] for i in range(4))
    return len(_compressor(level).compress(sample)) < len(sample) * (1 - _SAMPLE_MIN_SAVING)


def encode_frame(
    plain: bytes | memoryview, *, level: int = 1, digest: bytes | None = None,
    key: bytes | None = None,
) -> bytes:
    """Build the frame of ``plain``: zstd at ``level`` if that saves space, raw otherwise (a chunk
    above SAMPLE_ABOVE is compressed only if samples of it compress: `_may_compress`).

    With ``key`` the chunk's name is keyed (``FLAG_KEYED``). ``digest`` may be passed when the
    caller already hashed the chunk (with the same key; it is trusted, not recomputed);
    ``level=0`` disables compression.
    """
    n = len(plain)
    if n > MAX_CHUNK_PLAIN:
        raise ValueError(f"chunk of {n} bytes exceeds the largest chunk a frame may hold ({MAX_CHUNK_PLAIN})")
    if key is not None and len(key) != DIGEST_SIZE:
        raise ValueError(f"a chunk naming key is {DIGEST_SIZE} bytes, got {len(key)}")
    if digest is None:
        digest = chunk_digest(plain, key)
    elif len(digest) != DIGEST_SIZE:
        raise ValueError(f"digest must be {DIGEST_SIZE} bytes, got {len(digest)}")
    flags = 0 if key is None else FLAG_KEYED
    codec, payload, check = CODEC_RAW, plain, _NO_CHECK
    if level > 0 and n > 0 and _may_compress(plain, level):
        compressed = _compressor(level).compress(plain)
        if len(compressed) < n:
            codec, payload, check = CODEC_ZSTD, compressed, _payload_check(compressed)
        # else: drop it before building the frame, so two large buffers are never alive at once
        # (with glibc that turns every encode into a fresh mmap + page faults: 3x slower)
        del compressed
    if codec == CODEC_RAW and flags:  # a node cannot check a keyed name: give it the payload check
        check = _payload_check(plain)
    prefix = _PREFIX.pack(FRAME_MAGIC, FRAME_VERSION, codec, flags, n, len(payload), digest, check)
    return b"".join((prefix, _CRC.pack(zlib.crc32(prefix)), payload))


def read_frame_header(frame: bytes | memoryview) -> FrameHeader:
    """Parse and validate a frame header, including that ``len(frame)`` matches it."""
    size = len(frame)
    if size < FRAME_HEADER_SIZE:
        raise CorruptFrame(
            f"frame too short: {size} bytes, a header alone is {FRAME_HEADER_SIZE}"
        )
    mv = memoryview(frame)
    magic, version, codec, flags, plain_len, stored_len, digest, check = _PREFIX.unpack_from(mv)
    if magic != FRAME_MAGIC:
        raise CorruptFrame(f"not a maillage frame: magic {magic!r}, expected {FRAME_MAGIC!r}")
    if version != FRAME_VERSION:
        raise CorruptFrame(
            f"unsupported frame version {version} (this node reads version {FRAME_VERSION})"
        )
    (crc,) = _CRC.unpack_from(mv, _PREFIX.size)
    if zlib.crc32(mv[: _PREFIX.size]) != crc:
        raise CorruptFrame("frame header checksum mismatch: the header is damaged")
    if codec not in _CODECS:
        raise CorruptFrame(f"unknown frame codec {codec}")
    if flags & ~FLAG_KEYED:
        raise CorruptFrame(f"unknown frame flags {flags:#06x}")
    keyed = bool(flags & FLAG_KEYED)
    if plain_len > MAX_CHUNK_PLAIN or stored_len > MAX_CHUNK_PLAIN:
        which, n = ("plain", plain_len) if plain_len > MAX_CHUNK_PLAIN else ("stored", stored_len)
        raise FrameTooLarge(
            f"frame of chunk {bytes(digest).hex()} declares {n} {which} bytes, above the largest chunk "
            f"any node takes ({MAX_CHUNK_PLAIN} bytes, MAX_CHUNK_PLAIN): refused unread")
    if codec == CODEC_RAW and (stored_len != plain_len or (check != _NO_CHECK and not keyed)):
        raise CorruptFrame("raw frame with stored length != plain length or a payload check")
    if size != FRAME_HEADER_SIZE + stored_len:
        raise CorruptFrame(
            f"frame length {size} does not match its header "
            f"({FRAME_HEADER_SIZE} + {stored_len} payload bytes): truncated or padded"
        )
    return FrameHeader(FRAME_VERSION, codec, bytes(digest), plain_len, stored_len, keyed)


def _checked_payload(mv: memoryview, header: FrameHeader) -> tuple[memoryview, bool]:
    """The zstd payload of ``mv`` after its payload check, and whether it declares its size (then
    equal to the header's plain length)."""
    payload = mv[FRAME_HEADER_SIZE:]
    if _payload_check(payload) != bytes(mv[56:64]):
        raise CorruptFrame(f"compressed payload of chunk {header.digest.hex()} is damaged")
    try:
        declared = zstandard.get_frame_parameters(payload).content_size
    except zstandard.ZstdError as exc:
        raise CorruptFrame(f"chunk {header.digest.hex()}: zstd frame header is damaged: {exc}") from exc
    # Checked before anything is allocated: the decoder sizes its output by this field.
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared != header.plain_length:
        raise CorruptFrame(
            f"chunk {header.digest.hex()}: zstd payload declares {declared} plain bytes, "
            f"frame header says {header.plain_length}")
    return payload, declared != zstandard.CONTENTSIZE_UNKNOWN


def _length_mismatch(header: FrameHeader, got: str) -> CorruptFrame:
    return CorruptFrame(
        f"chunk {header.digest.hex()}: decompressed to {got} bytes, header says {header.plain_length}")


def _pieces(payload: memoryview, header: FrameHeader) -> Iterator[bytes]:
    """The plain bytes of a zstd payload, piece by piece, never more than the header's plain
    length (memory stays bounded by the piece and zstd's window, whatever the payload claims)."""
    total = 0
    try:
        with _decompressor().stream_reader(payload, read_across_frames=False) as reader:
            while total <= header.plain_length:
                piece = reader.read(min(_VERIFY_PIECE, header.plain_length + 1 - total))
                if not piece:
                    break
                total += len(piece)
                if total > header.plain_length:
                    raise _length_mismatch(header, "more")
                yield piece
    except zstandard.ZstdError as exc:
        raise CorruptFrame(f"chunk {header.digest.hex()}: zstd payload is damaged: {exc}") from exc
    if total != header.plain_length:
        raise _length_mismatch(header, str(total))


def _plain_of(mv: memoryview, header: FrameHeader) -> bytes | memoryview:
    if header.codec == CODEC_RAW:
        return mv[FRAME_HEADER_SIZE:]
    payload, declared = _checked_payload(mv, header)
    if not declared:  # no size to allocate by: decode in bounded pieces
        return b"".join(_pieces(payload, header))
    try:
        # The payload declares exactly the header's plain length (checked above).
        plain = _decompressor().decompress(payload, max_output_size=header.plain_length)
    except zstandard.ZstdError as exc:
        raise CorruptFrame(f"chunk {header.digest.hex()}: zstd payload is damaged: {exc}") from exc
    if len(plain) != header.plain_length:
        raise _length_mismatch(header, str(len(plain)))
    return plain


def _streamed_digest(mv: memoryview, header: FrameHeader, key: bytes | None) -> bytes:
    """BLAKE3 of the plain bytes (keyed with ``key`` if given), decompressed and hashed piece by
    piece."""
    if header.codec == CODEC_RAW:
        return chunk_digest(mv[FRAME_HEADER_SIZE:], key)
    payload, _ = _checked_payload(mv, header)
    hasher = _hasher(key)
    for piece in _pieces(payload, header):
        hasher.update(piece)
    return hasher.digest()


def _check_unnamed(mv: memoryview, header: FrameHeader) -> None:
    """Everything of a keyed frame but its name: the payload check, and for zstd a bounded
    decompression to exactly the header's plain length."""
    if header.codec == CODEC_RAW:
        if _payload_check(mv[FRAME_HEADER_SIZE:]) != bytes(mv[56:64]):
            raise CorruptFrame(f"raw payload of chunk {header.digest.hex()} is damaged")
        return
    payload, _ = _checked_payload(mv, header)
    for _ in _pieces(payload, header):
        pass


def _checked_header(mv: memoryview, expected_digest: bytes | None) -> FrameHeader:
    header = read_frame_header(mv)
    if expected_digest is not None and header.digest != expected_digest:
        raise CorruptFrame(
            f"frame holds chunk {header.digest.hex()}, expected {bytes(expected_digest).hex()}"
        )
    return header


def _mismatch(header: FrameHeader) -> CorruptFrame:
    keyed = "keyed " if header.keyed else ""
    return CorruptFrame(f"chunk {header.digest.hex()}: content does not match its {keyed}BLAKE3 digest")


def _name_key(header: FrameHeader, key: bytes | None) -> bytes | None:
    """The key to check this frame's name with: ``key`` for a keyed frame, none for an unkeyed one."""
    if not header.keyed:
        return None
    if key is None:
        raise CorruptFrame(f"chunk {header.digest.hex()} has a keyed name and no key was given to "
                           "verify it")
    return key


def decode_frame(
    frame: bytes | memoryview, *, expected_digest: bytes | None = None, key: bytes | None = None
) -> bytes:
    """Return the plain bytes of ``frame`` after full verification (raises :class:`CorruptFrame`).

    A keyed frame is checked with ``key`` and refused without one; an unkeyed frame is checked
    with the unkeyed digest whatever ``key`` is (chunks written before names were keyed)."""
    mv = memoryview(frame)
    header = _checked_header(mv, expected_digest)
    name_key = _name_key(header, key)
    plain = _plain_of(mv, header)
    if chunk_digest(plain, name_key) != header.digest:
        raise _mismatch(header)
    return plain if isinstance(plain, bytes) else bytes(plain)


def verify_frame(
    frame: bytes | memoryview, *, expected_digest: bytes | None = None, key: bytes | None = None
) -> FrameHeader:
    """Fully verify ``frame`` like :func:`decode_frame`, without holding its plain bytes (the
    payload is decompressed and hashed piece by piece).

    A keyed frame without ``key`` (a node storing or scrubbing it never holds the key) is checked
    for everything but its name: header, lengths, payload check, decompression; the returned
    header says ``keyed``. Only a holder of the key (the SDK) checks the name itself."""
    mv = memoryview(frame)
    header = _checked_header(mv, expected_digest)
    if header.keyed and key is None:
        _check_unnamed(mv, header)
        return header
    if _streamed_digest(mv, header, _name_key(header, key)) != header.digest:
        raise _mismatch(header)
    return header
