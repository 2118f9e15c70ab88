"""Request bodies: the bytes a client uploads, checked against what it signed and the checksums it sent.

`body(call)` yields the payload piece by piece and raises S3Error at the end (before the last piece
is returned to the caller's loop, so nothing is committed) when the body does not match its signed
SHA-256 (x-amz-content-sha256) or an x-amz-checksum-* header. `small_body` reads a bounded XML body.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import AsyncIterator

from .common import Call, same
from .errors import S3Error

__all__ = ["body", "small_body", "CHECKSUM_HEADERS", "Checksum"]

READ_PIECE = 256 * 1024
CHECKSUM_HEADERS = ("x-amz-checksum-crc32", "x-amz-checksum-sha1", "x-amz-checksum-sha256")


class Checksum:
    """One x-amz-checksum-* header of an upload (base64 of the big-endian digest), checked at the end."""

    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self.value = value.strip()
        self._crc = 0
        self._hash = None if header.endswith("crc32") else hashlib.new(header.rsplit("-", 1)[1])

    def update(self, piece: bytes) -> None:
        if self._hash is None:
            self._crc = zlib.crc32(piece, self._crc)
        else:
            self._hash.update(piece)

    def check(self) -> None:
        raw = self._crc.to_bytes(4, "big") if self._hash is None else self._hash.digest()
        if not same(base64.b64encode(raw).decode(), self.value):
            raise S3Error("BadDigest", f"the body does not match its {self.header} header; nothing was written")


def _checksums(call: Call) -> list[Checksum]:
    headers = call.request.headers
    unsupported = [n for n in headers if n.lower().startswith("x-amz-checksum-")
                   and n.lower() not in CHECKSUM_HEADERS and n.lower() != "x-amz-checksum-type"]
    if unsupported:
        raise S3Error("NotImplemented", f"{unsupported[0]} is not verified yet: send CRC32, SHA1 or SHA256")
    return [Checksum(name, headers[name]) for name in CHECKSUM_HEADERS if name in headers]


async def body(call: Call) -> AsyncIterator[bytes]:
    """The upload's bytes; raises S3Error after the last piece when they do not match what was signed."""
    checksums = _checksums(call)
    expected = call.auth.payload_sha256
    digest = hashlib.sha256() if expected is not None else None
    async for piece in call.request.content.iter_chunked(READ_PIECE):
        if digest is not None:
            digest.update(piece)
        for checksum in checksums:
            checksum.update(piece)
        yield piece
    if digest is not None and not same(digest.hexdigest(), expected or ""):
        raise S3Error("XAmzContentSHA256Mismatch", "the body's SHA-256 is not the x-amz-content-sha256 "
                                                   "the request signed; nothing was written")
    for checksum in checksums:
        checksum.check()


async def small_body(call: Call, limit: int) -> bytes:
    """A whole (XML) body of at most `limit` bytes, checked as `body` checks it."""
    parts: list[bytes] = []
    size = 0
    async for piece in body(call):
        size += len(piece)
        if size > limit:
            raise S3Error("MaxMessageLengthExceeded", f"the request body is larger than {limit} bytes")
        parts.append(piece)
    return b"".join(parts)
