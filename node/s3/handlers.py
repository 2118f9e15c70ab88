"""The S3 operations of phase 1, on the node's coordinator and tenancy with the signing key's `Caller`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import hmac
import re
import zlib
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from functools import partial
from urllib.parse import quote_plus

from aiohttp import web

from maillage.proto.frame import decode_frame
from maillage.storage import Manifest, version_time

from ..coordinator import Coordinator, Upload
from ..layout_state import LayoutState
from ..tenancy import Caller, Tenancy
from . import xml
from .errors import S3Error

__all__ = ["Handlers"]

READ_PIECE = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z")
_META = "x-amz-meta-"


def _etag(m: Manifest) -> str:
    return f'"{m.etag}"'


def _object_headers(m: Manifest) -> dict[str, str]:
    headers = {"ETag": _etag(m), "Content-Type": m.content_type, "Accept-Ranges": "bytes",
               "Last-Modified": email.utils.formatdate(version_time(m.version), usegmt=True)}
    for name, value in m.user_metadata:
        headers[_META + name] = value
    return headers


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive of a single `bytes=` range, None to serve the whole object."""
    match = _RANGE.match(header.strip())
    if match is None or match[1] == match[2] == "":
        raise S3Error("InvalidRange", f"unsupported Range {header[:60]!r}: use one bytes=first-last range")
    if match[1] == "":
        length = int(match[2])
        if length == 0 or size == 0:
            raise S3Error("InvalidRange", "the requested range is not satisfiable")
        return max(0, size - length), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if first >= size or last < first:
        raise S3Error("InvalidRange", f"the requested range {first}-{last} is not satisfiable (size {size})")
    return first, min(last, size - 1)


def _token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode("utf-8", "surrogatepass")).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "the continuation-token is not one this service gave") from None


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
        if not _same(base64.b64encode(raw).decode(), self.value):
            raise S3Error("BadDigest", f"the body does not match its {self.header} header; nothing was written")


class Handlers:
    def __init__(self, coordinator: Coordinator, tenancy: Tenancy, layout: LayoutState, executor: Executor,
                 default_policy: str = "") -> None:
        self._c = coordinator
        self._t = tenancy
        self._layout = layout
        self._executor = executor
        self.default_policy = default_policy

    # ----- service and buckets ---------------------------------------------------------------

    async def list_buckets(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        visible = self._t.visible(caller, await self._c.list_buckets())
        root = xml.root("ListAllMyBucketsResult")
        owner = xml.sub(root, "Owner")
        tenant = caller.key.tenant if caller.key else ""
        xml.sub(owner, "ID", tenant)
        xml.sub(owner, "DisplayName", tenant)
        buckets = xml.sub(root, "Buckets")
        for record in visible:
            b = xml.sub(buckets, "Bucket")
            xml.sub(b, "Name", record.name)
            xml.sub(b, "CreationDate", xml.iso8601(version_time(record.created)))
        return _xml(root)

    async def create_bucket(self, request: web.Request, caller: Caller, bucket: str,
                            payload_sha256: str | None) -> web.StreamResponse:
        body = b""
        while len(body) <= xml.MAX_XML_BODY and not request.content.at_eof():
            piece = await request.content.read(xml.MAX_XML_BODY + 1 - len(body))
            if not piece:
                break
            body += piece
        if payload_sha256 is not None and not _same(hashlib.sha256(body).hexdigest(), payload_sha256):
            raise S3Error("XAmzContentSHA256Mismatch", "the body's SHA-256 is not the x-amz-content-sha256 "
                                                       "the request signed")
        policy = xml.location_constraint(body) or self.default_policy
        if not policy:
            raise S3Error("InvalidLocationConstraint",
                          "no LocationConstraint given and this node has no default policy "
                          "(--s3-default-policy): name a residency policy, e.g. france-only")
        names = [p.name for p in self._layout.current.policies]
        if policy not in names:
            raise S3Error("InvalidLocationConstraint",
                          f"LocationConstraint {policy!r} is not a residency policy of this cluster "
                          f"(policies: {', '.join(names)})")
        caller.require("write", bucket, caller.tenant)
        await self._c.create_bucket(bucket, policy, caller.tenant)
        return web.Response(status=200, headers={"Location": "/" + bucket})

    async def head_bucket(self, request: web.Request, caller: Caller, bucket: str) -> web.StreamResponse:
        record = await self._t.bucket(caller, bucket, "read")
        return web.Response(status=200, headers={"x-amz-bucket-region": record.policy})

    async def delete_bucket(self, request: web.Request, caller: Caller, bucket: str) -> web.StreamResponse:
        await self._t.bucket(caller, bucket, "write")
        await self._c.delete_bucket(bucket)
        return web.Response(status=204)

    async def get_bucket_location(self, request: web.Request, caller: Caller, bucket: str) -> web.StreamResponse:
        record = await self._t.bucket(caller, bucket, "read")
        root = xml.root("LocationConstraint")
        root.text = record.policy
        return _xml(root)

    async def list_objects_v2(self, request: web.Request, caller: Caller, bucket: str) -> web.StreamResponse:
        q = request.query
        try:
            max_keys = int(q.get("max-keys", "1000"))
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys must be an integer") from None
        if max_keys < 0:
            raise S3Error("InvalidArgument", "max-keys must not be negative")
        encoding = q.get("encoding-type", "")
        if encoding not in ("", "url"):
            raise S3Error("InvalidArgument", f"encoding-type {encoding[:20]!r}: only 'url' is supported")
        enc = (lambda text: quote_plus(text, safe="/")) if encoding else (lambda text: text)
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        token = q.get("continuation-token", "")
        start_after = _untoken(token) if token else q.get("start-after", "")
        await self._t.bucket(caller, bucket, "read")
        root = xml.root("ListBucketResult")
        xml.sub(root, "Name", bucket)
        xml.sub(root, "Prefix", enc(prefix))
        if delimiter:
            xml.sub(root, "Delimiter", enc(delimiter))
        xml.sub(root, "MaxKeys", max_keys)
        if encoding:
            xml.sub(root, "EncodingType", encoding)
        if max_keys == 0:
            xml.sub(root, "KeyCount", 0)
            xml.sub(root, "IsTruncated", False)
            return _xml(root)
        listing = await self._c.list_objects(bucket, prefix=prefix, delimiter=delimiter,
                                             start_after=start_after, max_keys=min(max_keys, 1000))
        xml.sub(root, "KeyCount", len(listing.contents) + len(listing.common_prefixes))
        xml.sub(root, "IsTruncated", listing.is_truncated)
        if token:
            xml.sub(root, "ContinuationToken", token)
        if listing.is_truncated:
            xml.sub(root, "NextContinuationToken", _token(listing.next_token))
        if "start-after" in q:
            xml.sub(root, "StartAfter", enc(q["start-after"]))
        for m in listing.contents:
            c = xml.sub(root, "Contents")
            xml.sub(c, "Key", enc(m.key))
            xml.sub(c, "LastModified", xml.iso8601(version_time(m.version)))
            xml.sub(c, "ETag", _etag(m))
            xml.sub(c, "Size", m.size)
            xml.sub(c, "StorageClass", "STANDARD")
        xml.elements(root, "CommonPrefixes", [enc(p) for p in listing.common_prefixes])
        return _xml(root)

    # ----- objects ---------------------------------------------------------------------------

    async def put_object(self, request: web.Request, caller: Caller, bucket: str, key: str,
                         payload_sha256: str | None) -> web.StreamResponse:
        if request.headers.get("Content-Length") is None:
            raise S3Error("MissingContentLength", "PutObject needs a Content-Length")
        if "x-amz-copy-source" in request.headers:
            raise S3Error("NotImplemented", "CopyObject is not supported yet")
        await self._t.bucket(caller, bucket, "write")
        metadata = {name[len(_META):].lower(): value for name, value in request.headers.items()
                    if name.lower().startswith(_META)}
        upload = Upload(bucket=bucket, key=key, user_metadata=metadata,
                        content_type=request.headers.get("Content-Type") or "application/octet-stream")

        checksums = [Checksum(name, request.headers[name]) for name in CHECKSUM_HEADERS if name in request.headers]
        unsupported = [n for n in request.headers if n.lower().startswith("x-amz-checksum-")
                       and n.lower() not in CHECKSUM_HEADERS and n.lower() != "x-amz-checksum-type"]
        if unsupported:
            raise S3Error("NotImplemented", f"{unsupported[0]} is not verified yet: send CRC32, SHA1 or SHA256")

        async def pieces() -> AsyncIterator[bytes]:
            digest = hashlib.sha256() if payload_sha256 is not None else None
            async for piece in request.content.iter_chunked(READ_PIECE):
                if digest is not None:
                    digest.update(piece)
                for checksum in checksums:
                    checksum.update(piece)
                yield piece
            if digest is not None and not _same(digest.hexdigest(), payload_sha256 or ""):
                raise S3Error("XAmzContentSHA256Mismatch", "the body's SHA-256 is not the x-amz-content-sha256 "
                                                           "the request signed; nothing was written")
            for checksum in checksums:
                checksum.check()

        manifest, _sites = await self._c.put_object(upload, pieces())
        return web.Response(status=200, headers={"ETag": _etag(manifest)})

    async def head_object(self, request: web.Request, caller: Caller, bucket: str, key: str) -> web.StreamResponse:
        await self._t.bucket(caller, bucket, "read")
        m = await self._c.head_object(bucket, key)
        return web.Response(status=200, headers={**_object_headers(m), "Content-Length": str(m.size)})

    async def delete_object(self, request: web.Request, caller: Caller, bucket: str, key: str) -> web.StreamResponse:
        await self._t.bucket(caller, bucket, "write")
        await self._c.delete_object(bucket, key)
        return web.Response(status=204)

    async def get_object(self, request: web.Request, caller: Caller, bucket: str, key: str) -> web.StreamResponse:
        record = await self._t.bucket(caller, bucket, "read")
        m = await self._c.head_object(bucket, key)
        headers = _object_headers(m)
        wanted = parse_range(request.headers["Range"], m.size) if "Range" in request.headers else None
        first, last = wanted if wanted is not None else (0, m.size - 1)
        status = 206 if wanted is not None else 200
        if wanted is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{m.size}"
        headers["Content-Length"] = str(last - first + 1)
        if m.inline is not None or not m.chunks:
            body = (m.inline or b"")[first:last + 1]
            return web.Response(status=status, body=body, headers=headers)
        # Read the first chunk before answering, so a missing or corrupt object is an S3 error.
        parts = self._chunks(record.policy, self._c.key_of(record), m, first, last)
        head = await anext(parts, b"")
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        await response.write(head)
        async for part in parts:
            await response.write(part)
        await response.write_eof()
        return response

    async def _chunks(self, policy: str, name_key: bytes | None, m: Manifest, first: int,
                      last: int) -> AsyncIterator[bytes]:
        """The bytes first..last (inclusive), chunk by chunk, each chunk verified against its name."""
        table = self._layout.table(policy)
        loop = asyncio.get_running_loop()
        offset = 0
        for ref in m.chunks:
            start, end = offset, offset + ref.length
            offset = end
            if end <= first or start > last:
                continue
            frame = await self._c.read_chunk(table, ref.digest)
            plain = await loop.run_in_executor(
                self._executor, partial(decode_frame, frame, expected_digest=ref.digest, key=name_key))
            if len(plain) != ref.length:
                raise S3Error("InternalError", f"chunk {ref.digest.hex()[:16]} has {len(plain)} bytes, "
                                               f"the manifest says {ref.length}")
            yield plain[max(first - start, 0):min(last + 1, end) - start]


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def _xml(element) -> web.Response:
    return web.Response(status=200, body=xml.document(element), content_type="application/xml")
