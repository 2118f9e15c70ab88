"""S3 operations on one object: Put (with the standard headers and x-amz-meta-*), Get (Range,
conditional, response-* overrides), Head, Delete and CopyObject (metadata COPY or REPLACE,
conditional copy).

ETags: an object written through S3 carries the MD5 of its bytes (or the multipart form
`md5-of-part-md5s-N`) in its manifest's attributes, as S3 tools expect (s3cmd and rclone compare
it with their own MD5); an object written with the native SDK has only its BLAKE3, served as a
64-hex ETag that no tool mistakes for an MD5.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from urllib.parse import unquote

from aiohttp import web

from maillage.node.data import customer_keys
from maillage.node.data.coordinator import (
    MD5_ATTRIBUTE,
    StreamEnd,
    Upload,
    UploadStream,
    checksums_of,
    written_at,
)
from maillage.node.data.customer_keys import CustomerKey
from maillage.node.data.parts import segments
from maillage.node.data.versions import DeleteMarker
from maillage.node.s3 import encryption, object_lock, payload, tagging, versioning, xml
from maillage.node.s3.checksums import header_name
from maillage.node.s3.common import Call, Services, xml_response
from maillage.node.s3.errors import S3Error
from maillage.proto.etags import composed_parts
from maillage.proto.storage_class import STANDARD, storage_class
from maillage.storage import BucketRecord, Manifest

__all__ = ["etag", "put_object", "get_object", "head_object", "delete_object", "copy_object",
           "stored_headers", "read_range", "check_conditions", "COPY_SOURCE", "upload_from"]

READ_AHEAD = 2  # chunks fetched ahead of the one being sent (each up to 4 MiB)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z")
_META = "x-amz-meta-"
# The standard headers S3 stores with an object and serves back (manifest attributes).
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
_OVERRIDES = {"response-content-type": "Content-Type", "response-content-language": "Content-Language",
              "response-expires": "Expires", "response-cache-control": "Cache-Control",
              "response-content-disposition": "Content-Disposition",
              "response-content-encoding": "Content-Encoding"}


def etag(m: Manifest) -> str:
    """The quoted S3 ETag of an object version."""
    return f'"{dict(m.attributes).get(MD5_ATTRIBUTE) or m.etag}"'


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The standard headers of an upload to keep with the object (lower-case names)."""
    kept = {}
    for name in STORED_HEADERS:
        value = headers.get(name)
        if name == "Content-Encoding" and value:  # aws-chunked is the upload's framing, not the object's
            value = ",".join(v.strip() for v in value.split(",") if v.strip().lower() != "aws-chunked")
        if value:
            kept[name.lower()] = value
    return kept


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    return {name[len(_META):].lower(): value for name, value in headers.items() if name.lower().startswith(_META)}


def upload_from(call: Call) -> Upload:
    """What an S3 write request says of the object it makes: key, Content-Type, x-amz-meta-* and
    the stored headers."""
    headers = call.request.headers
    attributes = stored_headers(headers)
    if "x-amz-tagging" in headers:
        attributes[tagging.TAGS_ATTRIBUTE] = tagging.encode(tagging.from_header(headers["x-amz-tagging"]))
    attributes.update(object_lock.requested(headers))
    return Upload(key=call.key, user_metadata=user_metadata(headers),
                  content_type=headers.get("Content-Type") or "application/octet-stream",
                  attributes=attributes)


def _last_modified(m: Manifest) -> str:
    return email.utils.formatdate(written_at(m), usegmt=True)


def object_headers(m: Manifest) -> dict[str, str]:
    headers = {"ETag": etag(m), "Content-Type": m.content_type, "Accept-Ranges": "bytes",
               "Last-Modified": _last_modified(m)}
    attributes = dict(m.attributes)
    for name in STORED_HEADERS:
        if name.lower() in attributes:
            headers[name] = attributes[name.lower()]
    for name, value in m.user_metadata:
        headers[_META + name] = value
    if tags := tagging.count(attributes):
        headers["x-amz-tagging-count"] = str(tags)
    if not customer_keys.is_encrypted(attributes):
        headers[encryption.HEADER] = encryption.AT_REST  # an SSE-C object's answer says so instead
    headers.update(versioning.version_headers(m))
    headers.update(object_lock.object_headers(attributes))
    if (cls := storage_class(attributes)) != STANDARD:  # S3 names the class only when not STANDARD
        headers["x-amz-storage-class"] = cls
    return headers


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive of a single `bytes=` range."""
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


def part_of(query: Mapping[str, str], m: Manifest) -> tuple[tuple[int, int], str] | None:
    """GET/HEAD `partNumber=N`: ((first, last) bytes of part N, the parts count), None when not
    asked. An object written whole is its own part 1; a number it has not is InvalidPart."""
    value = query.get("partNumber")
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 10_000:
        raise S3Error("InvalidArgument", f"partNumber {value[:20]!r}: use an integer from 1 to 10000")
    found = segments(dict(m.attributes), m.size)
    number = int(value)
    if number > len(found) or m.size == 0:
        raise S3Error("InvalidPart", f"part {number} is not one of this object's {len(found)} part(s)")
    segment = found[number - 1]
    return (segment.start, segment.start + segment.length - 1), str(len(found))


# ----- conditions ----------------------------------------------------------------------------

def _etag_matches(condition: str, m: Manifest) -> bool:
    tags = [t.strip() for t in condition.split(",")]
    return "*" in tags or etag(m) in tags or etag(m).strip('"') in tags


def _date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None  # S3 ignores a date it cannot parse


COPY_SOURCE = "x-amz-copy-source-"  # the prefix of a copy's conditions on its source


def check_conditions(headers: Mapping[str, str], m: Manifest, *, prefix: str = "") -> None:
    """RFC 7232 preconditions as S3 evaluates them (If-Match before If-Unmodified-Since,
    If-None-Match before If-Modified-Since). `prefix` = COPY_SOURCE for a copy's source, whose
    failures are all 412; on GET and HEAD an unchanged object is 304."""
    modified = int(written_at(m))
    if_match, if_none = headers.get(prefix + "If-Match"), headers.get(prefix + "If-None-Match")
    if if_match is not None and not _etag_matches(if_match, m):
        raise S3Error("PreconditionFailed", f"{prefix}If-Match: the object's ETag is {etag(m)}")
    if if_match is None and (when := _date(headers.get(prefix + "If-Unmodified-Since", ""))) is not None \
            and modified > when:
        raise S3Error("PreconditionFailed", f"{prefix}If-Unmodified-Since: modified {_last_modified(m)}")
    if if_none is not None:
        unchanged = _etag_matches(if_none, m)
    else:
        unchanged = (when := _date(headers.get(prefix + "If-Modified-Since", ""))) is not None and modified <= when
    if unchanged:
        code = "PreconditionFailed" if prefix else "NotModified"
        raise S3Error(code, "not modified", status=412 if prefix else 304,
                      headers={"ETag": etag(m), "Last-Modified": _last_modified(m)})


def _put_conditions(call: Call) -> Callable[[Manifest | None], None] | None:
    """If-None-Match: * (create only) and If-Match on PUT, as a check of the key's current version
    (None: no object). Checked before the upload, not atomic with it: two writers racing both pass
    (last writer wins), as documented."""
    headers = call.request.headers
    if "If-None-Match" not in headers and "If-Match" not in headers:
        return None
    return partial(_check_put_conditions, headers, call.key)


def _check_put_conditions(headers: Mapping[str, str], key: str, current: Manifest | None) -> None:
    if current is None:
        if "If-Match" in headers:
            raise S3Error("PreconditionFailed", "If-Match: there is no such object")
        return
    if headers.get("If-None-Match", "").strip() == "*":
        raise S3Error("PreconditionFailed", f"If-None-Match: *: {key!r} already exists")
    if "If-Match" in headers and not _etag_matches(headers["If-Match"], current):
        raise S3Error("PreconditionFailed", f"If-Match: the object's ETag is {etag(current)}")


# ----- operations ----------------------------------------------------------------------------

async def put_object(s: Services, call: Call) -> web.StreamResponse:
    headers = call.request.headers
    if headers.get("Content-Length") is None and headers.get("x-amz-decoded-content-length") is None:
        raise S3Error("MissingContentLength", "PutObject needs a Content-Length")
    upload, body = upload_from(call), hashed_body(s, call)
    if (key := encryption.customer_key(headers)) is not None:
        upload, body = _encrypted(s, call, upload, key)
    manifest, _sites = await s.service.put_object(call.caller, call.bucket, upload, body, check=_put_conditions(call))
    return web.Response(status=200, headers={"ETag": etag(manifest), **versioning.written_headers(manifest),
                                             **encryption.customer_headers(key), **checksum_headers(manifest)})


def _encrypted(s: Services, call: Call, upload: Upload, key: CustomerKey) -> tuple[Upload, UploadStream]:
    """A whole-object write under a customer key: its fresh nonce and check in the attributes."""
    sealed = key.new_attributes()
    return (replace(upload, attributes={**upload.attributes, **sealed}),
            encrypted_body(s, call, key, customer_keys.nonce_of(sealed)))


def encrypted_body(s: Services, call: Call, key: CustomerKey, nonce: bytes, number: int = 0,
                   length: int = 0) -> UploadStream:
    """The body of a write under a customer key (a whole object, or part `number` of `length`
    bytes): its Content-MD5 and checksums checked, and kept, on the plain bytes; encrypted; its
    ETag the MD5 of what rests."""
    end = StreamEnd()
    pieces = payload.body(call, budget=s.upload_budget, verified=end.checksums)
    return md5_stream(customer_keys.encrypt(pieces, key, nonce, number, length), end=end)


def plain_range(s: Services, bucket: BucketRecord, m: Manifest, first: int, last: int, key: CustomerKey | None,
                nonce: bytes | None) -> AsyncIterator[bytes]:
    """The bytes first..last of a version as its writer sent them: read (`read_range`) and, for
    one written under a customer key (`nonce`: `customer_keys.require`'s), decrypted."""
    pieces = read_range(s, bucket, m, first, last)
    if nonce is None:
        return pieces
    assert key is not None
    return customer_keys.decrypt_range(pieces, key, nonce, segments(dict(m.attributes), m.size), first)


# MD5 runs on one thread of its own, piece after piece in order, while the event loop goes on
# (hashlib releases the GIL on large buffers): ~750 MB/s of one core, above what an upload reaches.
_MD5_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-md5")
_MD5_INLINE = 64 * 1024  # smaller pieces cost less to hash here than to hand over


def hashed_body(s: Services, call: Call) -> UploadStream:
    """The body of an object or part write (`payload.body`), its MD5 computed once: the stream's
    end value (the ETag), and the check of a Content-MD5 header."""
    expected = payload.content_md5(call.request.headers)
    end = StreamEnd()
    pieces = payload.body(call, budget=s.upload_budget, check_content_md5=False, verified=end.checksums)
    return md5_stream(pieces, expected, end)


def md5_stream(pieces: AsyncIterator[bytes], expected: bytes | None = None,
               end: StreamEnd | None = None) -> UploadStream:
    """`pieces` as an upload stream whose end value is their MD5 (the S3 ETag); `end`: the end
    values already begun (the checksums `payload.body` verified)."""
    end = end or StreamEnd()
    return UploadStream(_with_md5(pieces, end, expected), end)


def checksum_headers(m: Manifest) -> dict[str, str]:
    """x-amz-checksum-<algorithm> of the checksums a version's writer sent (and the door verified)."""
    return {header_name(algorithm): value for algorithm, value in checksums_of(m).items()}


def _checksum_asked(headers: Mapping[str, str]) -> bool:
    return headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


async def _with_md5(pieces: AsyncIterator[bytes], end: StreamEnd, expected: bytes | None) -> AsyncIterator[bytes]:
    """Pass `pieces` on; their MD5 lands in `end.md5` once they are all through (the coordinator
    reads the end values after the stream), or BadDigest ends the stream, before anything is
    written, when it is not `expected` (a Content-MD5). A piece is hashed on the MD5 thread while
    the next one is read and the coordinator works on this one."""
    md5 = hashlib.md5(usedforsecurity=False)
    loop = asyncio.get_running_loop()
    last: asyncio.Future[None] | None = None
    async for piece in pieces:
        if len(piece) < _MD5_INLINE and last is None:
            md5.update(piece)
        else:
            last = loop.run_in_executor(_MD5_THREAD, md5.update, piece)  # one thread: in order
        yield piece
    if last is not None:
        await last  # the single thread ran every update before this last one
    payload.check_md5(md5.digest(), expected)
    end.md5 = md5.hexdigest()


async def _read(s: Services, call: Call, operation: str) -> tuple[BucketRecord, Manifest]:
    """The version a GET or HEAD reads: the one its `versionId` names, else the key's current."""
    try:
        return await s.service.head_object(call.caller, call.bucket, call.key, operation,
                                           versioning.asked_version(call.request.query))
    except DeleteMarker as exc:
        raise versioning.marker_error(exc) from None


async def head_object(s: Services, call: Call) -> web.StreamResponse:
    _, m = await _read(s, call, "HeadObject")
    key = encryption.customer_key(call.request.headers)
    customer_keys.require(key, dict(m.attributes))  # before the conditions: a wrong key learns nothing
    check_conditions(call.request.headers, m)
    headers = object_headers(m) | encryption.customer_headers(key)
    headers["Content-Length"] = str(m.size)
    if (asked := part_of(call.request.query, m)) is not None:  # the part's length, as its GET would send
        (first, last), headers["x-amz-mp-parts-count"] = asked
        headers["Content-Length"] = str(last - first + 1)
        return web.Response(status=206, headers=headers | {"Content-Range": f"bytes {first}-{last}/{m.size}"})
    if _checksum_asked(call.request.headers):
        headers.update(checksum_headers(m))
    return web.Response(status=200, headers=headers)


OBJECT_ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")


async def get_object_attributes(s: Services, call: Call) -> web.StreamResponse:
    """GetObjectAttributes: the attributes named in `x-amz-object-attributes` (ETag, ObjectSize,
    StorageClass, ObjectParts' count for a multipart object, and the Checksum its writer sent, left
    out when it sent none, as S3 leaves out what an object has not)."""
    wanted = {a.strip() for a in call.request.headers.get("x-amz-object-attributes", "").split(",") if a.strip()}
    if not wanted or not wanted <= set(OBJECT_ATTRIBUTES):
        raise S3Error("InvalidArgument", "x-amz-object-attributes names one or more of "
                                         f"{', '.join(OBJECT_ATTRIBUTES)}")
    _, m = await _read(s, call, "GetObjectAttributes")
    customer_keys.require(encryption.customer_key(call.request.headers), dict(m.attributes))
    root = xml.root("GetObjectAttributesResponse")
    if "ETag" in wanted:
        xml.sub(root, "ETag", etag(m).strip('"'))
    if "ObjectParts" in wanted and (parts := composed_parts(m.etag)) is not None:
        xml.sub(xml.sub(root, "ObjectParts"), "PartsCount", parts)  # boto3: TotalPartsCount
    if "Checksum" in wanted and (sums := checksums_of(m)):
        checksum = xml.sub(root, "Checksum")
        for algorithm, value in sums.items():
            xml.sub(checksum, "Checksum" + algorithm.upper(), value)
        xml.sub(checksum, "ChecksumType", "COMPOSITE" if "-" in next(iter(sums.values())) else "FULL_OBJECT")
    if "StorageClass" in wanted:
        xml.sub(root, "StorageClass", storage_class(dict(m.attributes)))
    if "ObjectSize" in wanted:
        xml.sub(root, "ObjectSize", m.size)
    response = xml_response(root)
    response.headers["Last-Modified"] = _last_modified(m)
    response.headers.update(versioning.version_headers(m))
    return response


async def delete_object(s: Services, call: Call) -> web.StreamResponse:
    deleted = await s.service.delete_object(call.caller, call.bucket, call.key,
                                            versioning.asked_version(call.request.query),
                                            bypass_governance=object_lock.bypass_asked(call.request.headers))
    return web.Response(status=204, headers=versioning.deleted_headers(deleted))


async def get_object(s: Services, call: Call) -> web.StreamResponse:
    request = call.request
    record, m = await _read(s, call, "GetObject")
    asked = part_of(request.query, m)  # a part it has not: InvalidPart, before anything else
    key = encryption.customer_key(request.headers)
    nonce = customer_keys.require(key, dict(m.attributes))  # before the conditions: a wrong key learns nothing
    check_conditions(request.headers, m)
    headers = object_headers(m) | encryption.customer_headers(key)
    for parameter, header in _OVERRIDES.items():
        if parameter in request.query:
            headers[header] = request.query[parameter]
    wanted = parse_range(request.headers["Range"], m.size) if "Range" in request.headers else None
    if asked is not None:
        if wanted is not None:
            raise S3Error("InvalidRequest", "ask for a Range or a partNumber, not both")
        wanted, headers["x-amz-mp-parts-count"] = asked
    first, last = wanted if wanted is not None else (0, m.size - 1)
    status = 206 if wanted is not None else 200
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{m.size}"
    elif _checksum_asked(request.headers):  # the whole object's (a range has none of its own)
        headers.update(checksum_headers(m))
    headers["Content-Length"] = str(last - first + 1)
    parts = plain_range(s, record, m, first, last, key, nonce)
    if m.inline is not None or not m.chunks:
        return web.Response(status=status, body=b"".join([part async for part in parts]), headers=headers)
    # Read the first chunk before answering, so a missing or corrupt object is an S3 error.
    head = await anext(parts, b"")
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    await response.write(head)
    async for part in parts:
        await response.write(part)
    await response.write_eof()
    return response


async def read_range(s: Services, bucket: BucketRecord, m: Manifest, first: int,
                     last: int) -> AsyncIterator[bytes]:
    """The bytes first..last (inclusive) of an object, chunk by chunk, each verified against its
    name. Up to `READ_AHEAD` chunks are fetched and verified while the current one is sent, so a
    large GET waits on the network and the replicas once, not once per chunk; memory stays at a
    few chunks whatever the object's size."""
    if m.inline is not None:
        yield m.inline[first:last + 1]
        return
    coordinator = s.service.coordinator
    table, name_key = s.layout.table(coordinator.chunk_policy(bucket, m)), coordinator.key_of(bucket)
    wanted = []  # (ref, start of the chunk in the object) of the chunks the range touches
    offset = 0
    for ref in m.chunks:
        if offset + ref.length > first and offset <= last:
            wanted.append((ref, offset))
        offset += ref.length
    pending: collections.deque[asyncio.Task[bytes]] = collections.deque()
    try:
        for index, (ref, start) in enumerate(wanted):
            while len(pending) <= READ_AHEAD and index + len(pending) < len(wanted):
                ahead = wanted[index + len(pending)][0]
                pending.append(asyncio.ensure_future(coordinator.read_plain_chunk(table, ahead.digest, name_key)))
            plain = await pending.popleft()
            if len(plain) != ref.length:
                raise S3Error("InternalError", f"chunk {ref.digest.hex()[:16]} has {len(plain)} bytes, "
                                               f"the manifest says {ref.length}")
            yield plain[max(first - start, 0):min(last + 1, start + ref.length) - start]
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def copy_source(header: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id or None) of an x-amz-copy-source header ("/bucket/key" or
    "bucket/key", URL-encoded, optionally "?versionId=...")."""
    path, _, query = header.partition("?")
    source = unquote(path).lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", f"x-amz-copy-source {header[:80]!r} is not /bucket/key")
    version = None
    if query:
        name, _, value = query.partition("=")
        if name != "versionId":
            raise S3Error("InvalidArgument", f"x-amz-copy-source names {name[:20]!r}: only versionId may follow")
        version = versioning.check_marker(unquote(value))
    return bucket, key, version


async def copy_object(s: Services, call: Call) -> web.StreamResponse:
    headers = call.request.headers
    source_bucket, source_key, source_version = copy_source(headers["x-amz-copy-source"])
    directive = headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", f"x-amz-metadata-directive {directive[:20]!r}: use COPY or REPLACE")
    source_sse, dest_sse = encryption.customer_key(headers, encryption.COPY_SOURCE), encryption.customer_key(headers)
    if (source_bucket, source_key) == (call.bucket, call.key) and directive == "COPY" and source_version is None \
            and dest_sse is None:   # a copy onto itself under a (new) customer key changes it: a key rotation
        raise S3Error("InvalidRequest", "this copy request is illegal because it is trying to copy an object "
                                        "to itself without changing the object's metadata (use REPLACE)")
    tag_directive = headers.get("x-amz-tagging-directive", "COPY").upper()
    if tag_directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", f"x-amz-tagging-directive {tag_directive[:20]!r}: use COPY or REPLACE")
    if tag_directive == "REPLACE" and directive == "COPY":
        raise S3Error("NotImplemented", "x-amz-tagging-directive REPLACE is served with x-amz-metadata-directive "
                                        "REPLACE only (or copy, then PutObjectTagging)")
    replacement = None
    if directive == "REPLACE":
        replacement = upload_from(call)  # the source's tags stay unless the tagging directive replaces them
        if tag_directive == "REPLACE":  # none given: the copy has none
            replacement = replace(replacement, attributes={tagging.TAGS_ATTRIBUTE: "", **replacement.attributes})
    try:
        if source_sse is None and dest_sse is None:
            manifest = await s.service.copy_object(
                call.caller, source_bucket, source_key, call.bucket, call.key, replacement=replacement,
                check=partial(check_conditions, headers, prefix=COPY_SOURCE), source_version_id=source_version)
        else:
            manifest = await _copy_through(s, call, (source_bucket, source_key, source_version), replacement,
                                           source_sse, dest_sse)
    except DeleteMarker as exc:
        raise versioning.marker_error(exc) from None
    root = xml.root("CopyObjectResult")
    xml.sub(root, "LastModified", xml.iso8601(written_at(manifest)))
    xml.sub(root, "ETag", etag(manifest))
    response = xml_response(root)
    response.headers.update(versioning.written_headers(manifest))
    response.headers.update(encryption.customer_headers(dest_sse))
    if source_version is not None:
        response.headers["x-amz-copy-source-version-id"] = source_version
    return response


async def _copy_through(s: Services, call: Call, source: tuple[str, str, str | None], replacement: Upload | None,
                        source_sse: CustomerKey | None, dest_sse: CustomerKey | None) -> Manifest:
    """A copy with a customer key on either side: the bytes are read (every chunk verified),
    decrypted with the source's key, encrypted with the destination's, and written as a new
    object; the checks are a copy's (`service.copy_source`), the write a PutObject's."""
    bucket, key, version_id = source
    record, m = await s.service.copy_source(call.caller, bucket, key, call.bucket, version_id)
    attributes = dict(m.attributes)
    nonce = customer_keys.require(source_sse, attributes)
    check_conditions(call.request.headers, m, prefix=COPY_SOURCE)
    pieces = plain_range(s, record, m, 0, m.size - 1, source_sse, nonce)
    # COPY: the source's type, metadata, stored headers and tags; never its lock, key or ETag.
    upload = replacement or Upload(key=call.key, content_type=m.content_type, user_metadata=dict(m.user_metadata),
                                   attributes={k: v for k, v in attributes.items() if k in _COPIED_ATTRIBUTES})
    body = md5_stream(pieces)
    if dest_sse is not None:
        sealed = dest_sse.new_attributes()
        upload = replace(upload, attributes={**upload.attributes, **sealed})
        body = md5_stream(customer_keys.encrypt(pieces, dest_sse, customer_keys.nonce_of(sealed)))
    manifest, _sites = await s.service.put_object(call.caller, call.bucket, upload, body)
    return manifest


_COPIED_ATTRIBUTES = frozenset({*(name.lower() for name in STORED_HEADERS), tagging.TAGS_ATTRIBUTE})


# ----- tagging -------------------------------------------------------------------------------

async def get_object_tagging(s: Services, call: Call) -> web.StreamResponse:
    vid = versioning.asked_version(call.request.query)
    try:
        attributes = await s.service.object_attributes(call.caller, call.bucket, call.key, "GetObjectTagging", vid)
    except DeleteMarker as exc:
        raise versioning.marker_error(exc) from None
    response = xml_response(tagging.document(tagging.decode(attributes)))
    if vid is not None:
        response.headers[versioning.HEADER] = vid
    return response


async def put_object_tagging(s: Services, call: Call) -> web.StreamResponse:
    tags = tagging.from_document(await payload.small_body(call, tagging.MAX_DOCUMENT))
    return await _set_tags(s, call, tagging.encode(tags) if tags else None, "PutObjectTagging", 200)


async def delete_object_tagging(s: Services, call: Call) -> web.StreamResponse:
    return await _set_tags(s, call, None, "DeleteObjectTagging", 204)


async def _set_tags(s: Services, call: Call, encoded: str | None, operation: str, status: int) -> web.StreamResponse:
    """The tags of the current version, or of the version `versionId` names (a delete marker has none)."""
    try:
        manifest = await s.service.set_attribute(call.caller, call.bucket, call.key, tagging.TAGS_ATTRIBUTE, encoded,
                                                 operation, versioning.asked_version(call.request.query))
    except DeleteMarker as exc:
        raise versioning.marker_error(exc) from None
    return web.Response(status=status, headers=versioning.version_headers(manifest))
