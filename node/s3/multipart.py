"""S3 multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload,
AbortMultipartUpload, ListParts and ListMultipartUploads, through the service layer
(`maillage.node.service.objects`) onto `maillage.node.data.multipart`.

Parts are stored as chunks in reserved keys of the bucket itself (`node/data/multipart.py`); completing
composes the object's manifest from the parts' chunk lists without copying a byte. ETags: a part's
is its MD5, the object's S3's multipart form (MD5 of the parts' binary MD5s, "-<parts>").
UploadPartCopy reads its source range through `objects.read_range` (every chunk verified) after
`Coordinator.check_copy` allowed it: a part never widens the source's residency.

Unfinished uploads expire after `Services.upload_expiry` seconds: named again, an expired upload is
aborted and answered NoSuchUpload; every node sweeps them too (`cluster.upload_expiry`).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import replace
from urllib.parse import quote

from aiohttp import web

from maillage.node.data import customer_keys
from maillage.node.data.coordinator import UploadStream, checksums_of
from maillage.node.data.multipart import MAX_PART_SIZE, MAX_PARTS, MultipartUpload
from maillage.node.s3 import encryption, objects, payload, versioning, xml
from maillage.node.s3.checksums import composite, header_name
from maillage.node.s3.common import NUMBER, Call, Services, query_integer, xml_response
from maillage.node.s3.errors import S3Error
from maillage.storage import version_time

__all__ = ["create_upload", "upload_part", "upload_part_copy", "complete_upload", "abort_upload",
           "list_parts", "list_uploads", "MAX_COMPLETE_BODY"]

log = logging.getLogger(__name__)

MAX_COMPLETE_BODY = 2 * 1024 * 1024  # 10000 parts of ~150 bytes of XML (ETag, checksums)
MAX_PAGE = 1000
_COPY_RANGE = re.compile(r"bytes=(\d{1,19})-(\d{1,19})\Z")


def _part_number(q: Mapping[str, str]) -> int:
    value = q.get("partNumber", "")
    if not NUMBER.match(value.strip()) or not 1 <= int(value) <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"partNumber {value[:20]!r}: use an integer from 1 to {MAX_PARTS}")
    return int(value)


def _upload_id(q: Mapping[str, str]) -> str:
    value = q.get("uploadId", "")
    if not value:
        raise S3Error("InvalidArgument", "uploadId is empty")
    return value


def _quoted(md5: str) -> str:
    return f'"{md5}"'


# ----- Create, UploadPart, UploadPartCopy ----------------------------------------------------

async def create_upload(s: Services, call: Call) -> web.StreamResponse:
    """POST /bucket/key?uploads: the object's metadata and stored headers are given here."""
    upload = objects.upload_from(call)
    if (key := encryption.customer_key(call.request.headers)) is not None:  # the upload's nonce, for every part
        upload = replace(upload, attributes={**upload.attributes, **key.new_attributes()})
    made = await s.service.create_upload(call.caller, call.bucket, upload)
    root = xml.root("InitiateMultipartUploadResult")
    xml.sub(root, "Bucket", call.bucket)
    xml.sub(root, "Key", call.key)
    xml.sub(root, "UploadId", made.upload_id)
    response = xml_response(root)
    response.headers.update(encryption.customer_headers(key))
    if algorithm := call.request.headers.get("x-amz-checksum-algorithm"):  # the parts' checksums will be its
        response.headers["x-amz-checksum-algorithm"] = algorithm.upper()
        response.headers["x-amz-checksum-type"] = "COMPOSITE"
    return response


def _declared_length(headers: Mapping[str, str]) -> int:
    value = headers.get("x-amz-decoded-content-length") or headers.get("Content-Length")
    if value is None:
        raise S3Error("MissingContentLength", "UploadPart needs a Content-Length")
    if not value.strip().isdigit():
        raise S3Error("InvalidArgument", "Content-Length must be a number of bytes")
    length = int(value)
    if length > MAX_PART_SIZE:
        raise S3Error("EntityTooLarge", f"a part of {length} bytes is larger than the {MAX_PART_SIZE} bytes allowed")
    return length


async def upload_part(s: Services, call: Call) -> web.StreamResponse:
    """PUT /bucket/key?partNumber=N&uploadId=ID: the body, checked by `payload.body`."""
    q = call.request.query
    number, upload_id = _part_number(q), _upload_id(q)
    length = _declared_length(call.request.headers)
    key = encryption.customer_key(call.request.headers)

    def body(upload: MultipartUpload) -> UploadStream:
        """The part as sent, or encrypted under the upload's customer key (the same key, checked)."""
        nonce = customer_keys.require(key, dict(upload.attributes))
        if nonce is None:
            return objects.hashed_body(s, call)
        assert key is not None
        return objects.encrypted_body(s, call, key, nonce, number, length)

    part = await s.service.upload_part(call.caller, call.bucket, call.key, upload_id, number, body,
                                       expiry=s.upload_expiry)
    return web.Response(status=200, headers={"ETag": _quoted(part.etag), **encryption.customer_headers(key),
                                             **{header_name(a): v for a, v in part.checksums.items()}})


def _copy_range(header: str | None, size: int) -> tuple[int, int]:
    """(first, last) inclusive of x-amz-copy-source-range, or the whole source."""
    if header is None:
        return 0, size - 1
    match = _COPY_RANGE.match(header.strip())
    if match is None:
        raise S3Error("InvalidArgument", f"x-amz-copy-source-range {header[:60]!r}: use bytes=first-last")
    first, last = int(match[1]), int(match[2])
    if last < first or last >= size:
        raise S3Error("InvalidRange", f"x-amz-copy-source-range {first}-{last} is not within the source's "
                                      f"{size} bytes")
    return first, last


async def upload_part_copy(s: Services, call: Call) -> web.StreamResponse:
    """PUT /bucket/key?partNumber=N&uploadId=ID with x-amz-copy-source (and -range): the part's
    bytes are read from the source object, every chunk verified, and stored as a new part."""
    headers, q = call.request.headers, call.request.query
    number, upload_id = _part_number(q), _upload_id(q)
    source_bucket, source_key, source_version = objects.copy_source(headers["x-amz-copy-source"])
    # Read on the source, write on this bucket, and no residency widening, before any byte moves.
    source_record, dest = await s.service.copy_part_buckets(call.caller, source_bucket, call.bucket)
    if source_version is not None:
        source = await s.service.versions.get(source_record, source_key, source_version)
    else:
        source = await s.service.coordinator.head_object(source_record, source_key)
    attributes = dict(source.attributes)
    source_sse = encryption.customer_key(headers, encryption.COPY_SOURCE)
    source_nonce = customer_keys.require(source_sse, attributes)  # a wrong or missing key: nothing read
    objects.check_conditions(headers, source, prefix=objects.COPY_SOURCE)
    first, last = _copy_range(headers.get("x-amz-copy-source-range"), source.size)
    length = last - first + 1
    if length > MAX_PART_SIZE:
        raise S3Error("EntityTooLarge", f"a part of {length} bytes is larger than the {MAX_PART_SIZE} "
                                        "bytes allowed: give x-amz-copy-source-range")
    pieces = objects.plain_range(s, source_record, source, first, last, source_sse, source_nonce)
    key = encryption.customer_key(headers)

    def body(upload: MultipartUpload) -> UploadStream:
        """The range, decrypted with the source's key if it has one, encrypted with the upload's."""
        nonce = customer_keys.require(key, dict(upload.attributes))
        if nonce is None:
            return objects.md5_stream(pieces)
        assert key is not None
        return objects.md5_stream(customer_keys.encrypt(pieces, key, nonce, number, length))

    part = await s.service.uploads.upload_part(dest, call.key, upload_id, number, body, expiry=s.upload_expiry)
    root = xml.root("CopyPartResult")
    xml.sub(root, "LastModified", xml.iso8601(version_time(part.version)))
    xml.sub(root, "ETag", _quoted(part.etag))
    response = xml_response(root)
    response.headers.update(encryption.customer_headers(key))
    return response


# ----- Complete, Abort -----------------------------------------------------------------------

def complete_request(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) of each Part of a CompleteMultipartUpload body, in the order given
    (checksum elements are accepted and not used)."""
    parts: list[tuple[int, str]] = []
    for child in xml.parse(body, "CompleteMultipartUpload", MAX_COMPLETE_BODY):
        if xml.local_name(child.tag) != "Part":
            continue
        fields = {xml.local_name(c.tag): (c.text or "").strip() for c in child}
        number, etag = fields.get("PartNumber", ""), fields.get("ETag", "")
        if not NUMBER.match(number) or not etag:
            raise S3Error("MalformedXML", "every Part of the CompleteMultipartUpload request needs a PartNumber "
                                          "and an ETag")
        parts.append((int(number), etag))
        if len(parts) > MAX_PARTS:
            raise S3Error("MalformedXML", f"the request names more than {MAX_PARTS} parts")
    if not parts:
        raise S3Error("MalformedXML", "the CompleteMultipartUpload request names no Part")
    return parts


async def complete_upload(s: Services, call: Call) -> web.StreamResponse:
    """POST /bucket/key?uploadId=ID: compose the object from the parts listed (no byte copied)."""
    upload_id = _upload_id(call.request.query)
    # Checksum headers of this request describe the whole object, not its XML body.
    body = await payload.small_body(call, MAX_COMPLETE_BODY, checksum_headers=False)
    parts = complete_request(body)
    manifest = await s.service.complete_upload(call.caller, call.bucket, call.key, upload_id, parts,
                                               expiry=s.upload_expiry, compose=composite)
    root = xml.root("CompleteMultipartUploadResult")
    xml.sub(root, "Location", f"/{call.bucket}/{quote(call.key, safe='/')}")
    xml.sub(root, "Bucket", call.bucket)
    xml.sub(root, "Key", call.key)
    xml.sub(root, "ETag", objects.etag(manifest))
    for algorithm, value in checksums_of(manifest).items():
        xml.sub(root, f"Checksum{algorithm.upper()}", value)
    response = xml_response(root)
    response.headers.update(versioning.written_headers(manifest))
    if customer_keys.is_encrypted(dict(manifest.attributes)):
        response.headers[encryption.CUSTOMER_ALGORITHM] = customer_keys.ALGORITHM
    return response


async def abort_upload(s: Services, call: Call) -> web.StreamResponse:
    """DELETE /bucket/key?uploadId=ID: the parts are dropped (their chunks go with the chunk GC)."""
    upload_id = _upload_id(call.request.query)
    await s.service.abort_upload(call.caller, call.bucket, call.key, upload_id)
    return web.Response(status=204)


# ----- ListParts, ListMultipartUploads -------------------------------------------------------

async def list_parts(s: Services, call: Call) -> web.StreamResponse:
    """GET /bucket/key?uploadId=ID (max-parts, part-number-marker)."""
    q = call.request.query
    upload_id = _upload_id(q)
    max_parts = query_integer(q, "max-parts", MAX_PAGE, largest=MAX_PAGE)
    marker = query_integer(q, "part-number-marker", 0)
    enc = xml.key_encoder(q)
    record, upload, listing = await s.service.list_parts(call.caller, call.bucket, call.key, upload_id, marker=marker,
                                                         max_parts=max_parts, expiry=s.upload_expiry)
    if listing is None:
        parts, truncated, next_marker = [], False, marker
    else:
        parts, truncated, next_marker = listing.parts, listing.is_truncated, listing.next_marker
    root = xml.root("ListPartsResult")
    xml.sub(root, "Bucket", call.bucket)
    xml.sub(root, "Key", enc(call.key))
    xml.sub(root, "UploadId", upload_id)
    xml.person(root, "Initiator", upload.initiator)
    xml.person(root, "Owner", record.owner)
    xml.sub(root, "StorageClass", "STANDARD")
    xml.sub(root, "PartNumberMarker", marker)
    xml.sub(root, "NextPartNumberMarker", next_marker)
    xml.sub(root, "MaxParts", max_parts)
    xml.sub(root, "IsTruncated", truncated)
    if "encoding-type" in q:
        xml.sub(root, "EncodingType", "url")
    for part in parts:
        p = xml.sub(root, "Part")
        xml.sub(p, "PartNumber", part.number)
        xml.sub(p, "LastModified", xml.iso8601(version_time(part.version)))
        xml.sub(p, "ETag", _quoted(part.etag))
        xml.sub(p, "Size", part.size)
    return xml_response(root)


def _upload_element(root: ET.Element, upload: MultipartUpload, owner: str, enc: Callable[[str], str]) -> None:
    u = xml.sub(root, "Upload")
    xml.sub(u, "Key", enc(upload.key))
    xml.sub(u, "UploadId", upload.upload_id)
    xml.person(u, "Initiator", upload.initiator)
    xml.person(u, "Owner", owner)
    xml.sub(u, "StorageClass", "STANDARD")
    xml.sub(u, "Initiated", xml.iso8601(version_time(upload.initiated)))


async def list_uploads(s: Services, call: Call) -> web.StreamResponse:
    """GET /bucket?uploads (prefix, delimiter, key-marker, upload-id-marker, max-uploads)."""
    q = call.request.query
    max_uploads = query_integer(q, "max-uploads", MAX_PAGE, largest=MAX_PAGE)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    enc = xml.key_encoder(q)
    record, listing = await s.service.list_uploads(
        call.caller, call.bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        upload_id_marker=id_marker, max_uploads=max_uploads, expiry=s.upload_expiry)
    root = xml.root("ListMultipartUploadsResult")
    xml.sub(root, "Bucket", call.bucket)
    xml.sub(root, "KeyMarker", enc(key_marker))
    xml.sub(root, "UploadIdMarker", id_marker)
    if listing is None:
        xml.sub(root, "MaxUploads", 0)
        xml.sub(root, "IsTruncated", False)
        return xml_response(root)
    xml.sub(root, "NextKeyMarker", enc(listing.next_key_marker))
    xml.sub(root, "NextUploadIdMarker", listing.next_upload_id_marker)
    if delimiter:
        xml.sub(root, "Delimiter", enc(delimiter))
    xml.sub(root, "Prefix", enc(prefix))
    xml.sub(root, "MaxUploads", max_uploads)
    xml.sub(root, "IsTruncated", listing.is_truncated)
    if "encoding-type" in q:
        xml.sub(root, "EncodingType", "url")
    for upload in listing.uploads:
        _upload_element(root, upload, record.owner, enc)
    xml.elements(root, "CommonPrefixes", [enc(p) for p in listing.common_prefixes])
    return xml_response(root)
