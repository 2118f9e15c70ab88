"""Request bodies: the bytes a client uploads, decoded and checked against what it signed and the
checksums it sent.

`body(call)` yields the payload piece by piece, so every handler (PutObject, UploadPart, the XML
bodies) gets decoded bytes, and raises S3Error before its stream ends when they do not match: a
caller that commits only after the stream's end (the coordinator writes the manifest last) commits
nothing. What is checked:

- an aws-chunked body (x-amz-content-sha256 STREAMING-*, see `sigv4.py`) is decoded here: each
  signed chunk is read whole (at most `MAX_CHUNK` bytes) and its signature, chained from the
  request's seed signature, verified before any of its bytes are passed on; unsigned chunks stream
  through. Header lines, chunk sizes and the trailer are bounded; the decoded length must be
  x-amz-decoded-content-length; a -TRAILER body ends with the trailer x-amz-trailer announced
  (signed, for STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER);
- a signed SHA-256 (x-amz-content-sha256) of a plain body;
- one x-amz-checksum-<algorithm> (CRC32, CRC32C, CRC64NVME, SHA1, SHA256, SHA512, XXHASH64/3/128),
  sent as a header or as the trailer: mismatch is BadDigest;
- Content-MD5: malformed is InvalidDigest, mismatch BadDigest.

`small_body` reads a bounded (XML) body.

Decoding costs little next to the rest of an upload (64 MiB in 256 KiB reads, this machine): an
unsigned-trailer stream with a CRC32C decodes at ~8.5 GB/s, a signed one with 64 KiB chunks at
~1.2 GB/s (SHA-256 of every chunk), a plain body passes at ~15 GB/s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from maillage.node.runtime.budget import Lease, UploadBudget
from maillage.node.s3.checksums import ALGORITHMS, HEADER_PREFIX, Running, decode_value, header_name
from maillage.node.s3.common import Call, same
from maillage.node.s3.errors import S3Error
from maillage.node.s3.sigv4 import Verified

__all__ = ["body", "small_body", "content_md5", "check_md5", "ChunkedBody", "CHECKSUM_HEADERS", "READ_PIECE",
           "MAX_CHUNK", "MAX_LINE", "MAX_TRAILER_LINES", "BODY_TAKEN", "RAW_BODY"]

READ_PIECE = 256 * 1024
MAX_CHUNK = 16 * 1024 * 1024   # one aws-chunked chunk (SDKs send 8 KiB..1 MiB; MinIO's bound too)
MAX_LINE = 1024                # a chunk header or trailer line, CRLF excluded (a signed header is 90)
MAX_TRAILER_LINES = 8
MAX_OBJECT = 5 * 1024 ** 4     # S3's largest object: 5 TiB
CHECKSUM_HEADERS = tuple(header_name(a) for a in ALGORITHMS)
# x-amz-checksum-* headers that are not a checksum of the body (multipart and GetObject options)
_NOT_A_BODY_CHECKSUM = frozenset({"x-amz-checksum-type", "x-amz-checksum-algorithm", "x-amz-checksum-mode"})
TRAILER_SIGNATURE = b"x-amz-trailer-signature"
_CHUNK_HEADER = re.compile(rb"([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?\Z")
_DECIMAL = re.compile(r"\d{1,16}\Z")
_NOTHING_WRITTEN = "; nothing was written"
# Keys of the aiohttp request's own mapping, for the door (`forward.py`): a handler began reading
# the body (it can no longer be passed on as it came), and the raw bytes of a small body read whole
# (which can: CreateBucket's, read before the service says the node is outside its policy).
BODY_TAKEN = web.RequestKey("body_taken", bool)
RAW_BODY = web.RequestKey("raw_body", bytes)


def _framing(message: str) -> S3Error:
    return S3Error("InvalidRequest", f"malformed aws-chunked body: {message}{_NOTHING_WRITTEN}")


def _truncated() -> S3Error:
    return S3Error("IncompleteBody", f"the aws-chunked body ended before its final chunk{_NOTHING_WRITTEN}")


class _Reader:
    """An async byte source read as CRLF-terminated lines and counted spans. It holds at most one
    piece of the source plus a partial line, whatever the input."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._buf = b""
        self._pos = 0

    async def _more(self) -> bool:
        while True:
            piece = await anext(self._source, None)
            if piece is None:
                return False
            if piece:
                break
        rest = self._buf[self._pos:]
        self._buf = rest + piece if rest else bytes(piece)
        self._pos = 0
        return True

    async def line(self, *, eof_ok: bool = False) -> bytes | None:
        """The next line without its CRLF; None at the end of the source when `eof_ok`."""
        while True:
            end = self._buf.find(b"\r\n", self._pos, self._pos + MAX_LINE + 2)
            if end >= 0:
                line = self._buf[self._pos:end]
                self._pos = end + 2
                return line
            if len(self._buf) - self._pos >= MAX_LINE + 2:
                raise _framing(f"a chunk header or trailer line is longer than {MAX_LINE} bytes")
            if not await self._more():
                if eof_ok and self._pos == len(self._buf):
                    return None
                raise _truncated()

    async def span(self, size: int) -> AsyncIterator[bytes]:
        """The next `size` bytes, piece by piece."""
        while size > 0:
            if self._pos == len(self._buf) and not await self._more():
                raise _truncated()
            take = min(size, len(self._buf) - self._pos)
            if self._pos == 0 and take == len(self._buf):
                piece = self._buf
            else:
                piece = self._buf[self._pos:self._pos + take]
            self._pos += take
            size -= take
            yield piece

    async def exactly(self, size: int) -> bytes:
        return b"".join([piece async for piece in self.span(size)])

    async def at_end(self) -> bool:
        return self._pos == len(self._buf) and not await self._more()


class ChunkedBody:
    """An aws-chunked body being decoded: `pieces()` yields the payload; `trailers` holds the
    trailing headers (lower-case name -> value) once it has ended.

    `auth` says the mode (signed chunks or not, trailer or not) and holds the seed signature and
    signing key; `trailer_names` are the trailers x-amz-trailer announced (each must come, and no
    other)."""

    def __init__(self, source: AsyncIterator[bytes], auth: Verified, decoded_length: int,
                 trailer_names: tuple[str, ...] = (), lease: Lease | None = None) -> None:
        self._lease = lease  # a signed chunk is held whole: its bytes count against the node's budget
        self._reader = _Reader(source)
        self._auth = auth
        self._decoded_length = decoded_length
        self._trailer_names = trailer_names
        self.trailers: dict[str, str] = {}

    async def pieces(self) -> AsyncIterator[bytes]:
        auth, reader = self._auth, self._reader
        signed = auth.signed_chunks
        previous = auth.signature
        total = 0
        while True:
            header = await reader.line()
            assert header is not None
            size, signature = self._chunk_header(header, signed)
            if total + size > self._decoded_length:
                raise S3Error("InvalidRequest", f"the aws-chunked body holds more bytes than its x-amz-decoded-"
                                                f"content-length {self._decoded_length}{_NOTHING_WRITTEN}")
            if signed:
                if self._lease is not None:
                    await self._lease.hold(size)  # Overloaded (SlowDown) when the node is full
                digest = hashlib.sha256()
                parts = []
                async for piece in reader.span(size):
                    digest.update(piece)
                    parts.append(piece)
                if not hmac.compare_digest(auth.chunk_signature(previous, digest.hexdigest()), signature):
                    raise S3Error("SignatureDoesNotMatch", f"the signature of the aws-chunked chunk at decoded "
                                                           f"offset {total} does not match{_NOTHING_WRITTEN}")
                previous = signature
                if size:
                    yield parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                async for piece in reader.span(size):
                    yield piece
            if size == 0:
                break
            total += size
            if await reader.exactly(2) != b"\r\n":
                raise _framing("a chunk's data is not followed by CRLF")
        if total != self._decoded_length:
            raise S3Error("IncompleteBody", f"the aws-chunked body decodes to {total} bytes, not the "
                                            f"{self._decoded_length} of x-amz-decoded-content-length{_NOTHING_WRITTEN}")
        await self._trailer(previous)
        if not await reader.at_end():
            raise _framing("bytes after the end of the body")

    @staticmethod
    def _chunk_header(line: bytes, signed: bool) -> tuple[int, str]:
        match = _CHUNK_HEADER.match(line)
        if match is None:
            raise _framing("a chunk header is not <hex size>[;chunk-signature=<64 hex>]")
        if signed and match[2] is None:
            raise S3Error("SignatureDoesNotMatch", f"an aws-chunked chunk has no chunk-signature{_NOTHING_WRITTEN}")
        if not signed and match[2] is not None:
            raise _framing("a chunk-signature in a body whose chunks were declared unsigned")
        size = int(match[1], 16)
        if size > MAX_CHUNK:
            raise _framing(f"a chunk of {size} bytes (at most {MAX_CHUNK} per chunk)")
        return size, (match[2] or b"").decode()

    async def _trailer(self, previous: str) -> None:
        lines: list[bytes] = []
        while True:  # trailer lines, then an empty line (or the end of the body in its place)
            line = await self._reader.line(eof_ok=True)
            if not line:
                break
            if len(lines) == MAX_TRAILER_LINES:
                raise _framing(f"more than {MAX_TRAILER_LINES} trailer lines")
            lines.append(line)
        auth = self._auth
        if auth.mode.endswith("-TRAILER") and auth.signed_chunks:
            last = lines.pop() if lines else b""
            label, _, given = last.partition(b":")
            if label.strip().lower() != TRAILER_SIGNATURE:
                raise S3Error("SignatureDoesNotMatch", f"the signed trailer has no {TRAILER_SIGNATURE.decode()}"
                                                       f"{_NOTHING_WRITTEN}")
            canonical = b"".join(n.strip().lower() + b":" + v.strip() + b"\n"
                                 for n, _, v in (line.partition(b":") for line in lines))
            expected = auth.trailer_signature(previous, hashlib.sha256(canonical).hexdigest())
            if not hmac.compare_digest(expected.encode(), given.strip()):
                raise S3Error("SignatureDoesNotMatch", f"the trailer signature does not match{_NOTHING_WRITTEN}")
        elif lines and not auth.has_trailer:
            raise _framing("a trailer after a body declared without one")
        for line in lines:
            raw_name, colon, raw_value = line.partition(b":")
            try:
                name, value = raw_name.strip().lower().decode("ascii"), raw_value.strip().decode("ascii")
            except UnicodeDecodeError:
                raise _framing("a trailer line that is not ASCII") from None
            if not colon or name not in self._trailer_names:
                raise _framing(f"trailer {name[:64]!r} was not announced by x-amz-trailer")
            if name in self.trailers:
                raise _framing(f"trailer {name} given twice")
            self.trailers[name] = value
        missing = [n for n in self._trailer_names if n not in self.trailers]
        if missing:
            raise S3Error("InvalidRequest", f"the trailer {', '.join(missing)} announced by x-amz-trailer "
                                            f"is missing from the body{_NOTHING_WRITTEN}")


# ----- what the request says about its body ---------------------------------------------------

def _checksum_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """algorithm -> base64 value of the x-amz-checksum-* headers that checksum the body."""
    sent: dict[str, str] = {}
    for name in headers:
        lower = name.lower()
        if not lower.startswith(HEADER_PREFIX) or lower in _NOT_A_BODY_CHECKSUM:
            continue
        algorithm = lower[len(HEADER_PREFIX):]
        if algorithm not in ALGORITHMS:
            raise S3Error("NotImplemented", f"{name[:64]} is not verified here: send one of "
                                            f"{', '.join(a.upper() for a in ALGORITHMS)}")
        sent[algorithm] = headers[name]
    return sent


def _trailer_names(headers: Mapping[str, str], auth: Verified) -> tuple[str, ...]:
    announced = headers.get("x-amz-trailer", "").strip()
    if not announced:
        return ()
    if not auth.has_trailer:
        raise S3Error("InvalidRequest", "x-amz-trailer is only allowed with x-amz-content-sha256 STREAMING-"
                                        "UNSIGNED-PAYLOAD-TRAILER or STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
    names = tuple(n.strip().lower() for n in announced.split(",") if n.strip())
    for name in names:
        if not name.startswith(HEADER_PREFIX) or name[len(HEADER_PREFIX):] not in ALGORITHMS:
            raise S3Error("InvalidRequest", f"x-amz-trailer {name[:64]!r}: the trailer can only be one of "
                                            f"{', '.join(CHECKSUM_HEADERS)}")
    return names


def _decoded_length(headers: Mapping[str, str]) -> int:
    value = headers.get("x-amz-decoded-content-length")
    if value is None:
        raise S3Error("MissingContentLength", "an aws-chunked upload needs x-amz-decoded-content-length")
    if not _DECIMAL.match(value.strip()):
        raise S3Error("InvalidArgument", "x-amz-decoded-content-length must be a number of bytes")
    length = int(value)
    if length > MAX_OBJECT:
        raise S3Error("EntityTooLarge", f"{length} bytes is more than the largest object ({MAX_OBJECT} bytes)")
    return length


def content_md5(headers: Mapping[str, str]) -> bytes | None:
    """The request's Content-MD5 (16 bytes), None without one; InvalidDigest when malformed."""
    value = headers.get("Content-MD5")
    if value is None:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True) if len(value) <= 64 else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise S3Error("InvalidDigest", "Content-MD5 is not the base64 of a 16-byte MD5")
    return raw


def check_md5(actual: bytes, expected: bytes | None) -> None:
    """BadDigest unless a body's MD5 is its Content-MD5 (`content_md5`; nothing to check without one)."""
    if expected is not None and not hmac.compare_digest(actual, expected):
        raise S3Error("BadDigest", f"the body does not match its Content-MD5{_NOTHING_WRITTEN}")


# ----- the body ---------------------------------------------------------------------------------

#: Seconds a request body may send nothing before the request is ended (RequestTimeout): a client
#: that stops half way through a body must not hold its connection, its upload budget and a
#: handler forever.
BODY_IDLE_TIMEOUT = 30.0


async def _idle_bounded(source: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """`source`, ended with RequestTimeout when no piece arrives for `seconds`."""
    while True:
        try:
            async with asyncio.timeout(seconds):
                piece = await anext(source, None)
        except TimeoutError:
            raise S3Error("RequestTimeout", f"no byte of the request body arrived for {seconds:g} s; "
                                            f"nothing was written") from None
        if piece is None:
            return
        yield piece


async def body(call: Call, *, checksum_headers: bool = True, verified: dict[str, str] | None = None,
               budget: UploadBudget | None = None, check_content_md5: bool = True,
               idle_timeout: float = BODY_IDLE_TIMEOUT, raw: list[bytes] | None = None) -> AsyncIterator[bytes]:
    """The upload's bytes, decoded; raises S3Error before the stream ends when they do not match
    what was signed or sent. `checksum_headers=False` leaves x-amz-checksum-* headers unchecked (for
    a request whose checksum headers describe something else than its body, such as
    CompleteMultipartUpload's whole-object checksum). `verified`, when given, receives
    algorithm -> base64 value of each checksum that was sent and matched. `budget`: the node's
    upload budget, which a signed aws-chunked chunk (held whole until its signature is checked)
    is counted against. `check_content_md5=False`: the caller hashes the body with MD5 anyway (an
    object's ETag) and checks Content-MD5 itself (`objects.hashed_body`), so it is not hashed twice.
    A body that sends nothing for `idle_timeout` seconds is RequestTimeout. `raw`, when given,
    receives the body's bytes as they came (before any aws-chunked decoding)."""
    call.request[BODY_TAKEN] = True
    headers = call.request.headers
    auth = call.auth
    sent = _checksum_headers(headers) if checksum_headers else {}
    trailer_names = _trailer_names(headers, auth)
    for name in trailer_names:
        if name[len(HEADER_PREFIX):] in sent:
            raise S3Error("InvalidRequest", f"{name} is given both as a header and as a trailer")
        sent[name[len(HEADER_PREFIX):]] = ""  # its value comes with the trailer, at the end
    if len(sent) > 1:
        raise S3Error("InvalidRequest", "expecting a single x-amz-checksum-* header or trailer, got "
                                        f"{', '.join(sorted(sent))}")
    for algorithm, value in sent.items():
        if value and decode_value(algorithm, value) is None:
            raise S3Error("BadDigest", f"the value of {header_name(algorithm)} is not the base64 of a "
                                            f"{algorithm.upper()} digest")
    running = [Running(algorithm) for algorithm in sent]
    md5 = content_md5(headers) if check_content_md5 else None
    if md5 is not None:
        running.append(Running("md5"))
    digest = hashlib.sha256() if auth.payload_sha256 is not None else None

    source: AsyncIterator[bytes] = _idle_bounded(call.request.content.iter_chunked(READ_PIECE), idle_timeout)
    if raw is not None:
        source = _recorded(source, raw)
    chunked = None
    lease = budget.lease() if budget is not None and auth.streaming else None
    if auth.streaming:
        chunked = ChunkedBody(source, auth, _decoded_length(headers), trailer_names, lease)
        source = chunked.pieces()
    try:
        async for piece in source:
            if digest is not None:
                digest.update(piece)
            for checksum in running:
                checksum.update(piece)
            yield piece
    finally:
        if lease is not None:
            lease.close()

    if digest is not None and not same(digest.hexdigest(), auth.payload_sha256 or ""):
        raise S3Error("XAmzContentSHA256Mismatch", "the body's SHA-256 is not the x-amz-content-sha256 "
                                                   f"the request signed{_NOTHING_WRITTEN}")
    for checksum in running:
        if checksum.algorithm == "md5":
            check_md5(checksum.digest(), md5)
            continue
        name = header_name(checksum.algorithm)
        value = sent[checksum.algorithm] or (chunked.trailers.get(name, "") if chunked is not None else "")
        expected = decode_value(checksum.algorithm, value)
        if expected is None:
            raise S3Error("InvalidRequest", f"the {name} trailer is not the base64 of a "
                                            f"{checksum.algorithm.upper()} digest{_NOTHING_WRITTEN}")
        actual = checksum.digest()
        if not hmac.compare_digest(actual, expected):
            raise S3Error("BadDigest", f"the body does not match its {name}{_NOTHING_WRITTEN}")
        if verified is not None:
            verified[checksum.algorithm] = base64.b64encode(actual).decode()


async def _recorded(source: AsyncIterator[bytes], raw: list[bytes]) -> AsyncIterator[bytes]:
    async for piece in source:
        raw.append(piece)
        yield piece


async def small_body(call: Call, limit: int, *, checksum_headers: bool = True) -> bytes:
    """A whole (XML) body of at most `limit` bytes, checked as `body` checks it. Its raw bytes are
    kept with the request (`RAW_BODY`), so the door can still pass it on."""
    parts: list[bytes] = []
    raw: list[bytes] = []
    size = 0
    async for piece in body(call, checksum_headers=checksum_headers, raw=raw):
        size += len(piece)
        if size > limit:
            raise S3Error("MaxMessageLengthExceeded", f"the request body is larger than {limit} bytes")
        parts.append(piece)
    call.request[RAW_BODY] = b"".join(raw)
    return b"".join(parts)
