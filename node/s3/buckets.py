"""S3 operations on the service and on buckets: list buckets, create/head/delete a bucket, its
location (the residency policy), object listings (V1 and V2) and DeleteObjects."""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import partial

from aiohttp import web

from maillage.node.data.coordinator import is_common_prefix, past, written_at
from maillage.node.data.versions import Deleted
from maillage.node.errors import BucketAlreadyExists
from maillage.node.runtime.concurrency import gather_bounded
from maillage.node.s3 import encryption, object_lock, objects, payload, tagging, versioning, xml
from maillage.node.s3.common import Call, Services, query_integer, xml_response
from maillage.node.s3.errors import S3Error, from_exception
from maillage.proto.storage_class import storage_class
from maillage.storage import Manifest, version_time

__all__ = ["list_buckets", "create_bucket", "head_bucket", "delete_bucket", "get_bucket_location",
           "list_objects", "delete_objects", "get_bucket_versioning", "put_bucket_versioning",
           "list_object_versions"]

MAX_DELETE_KEYS = 1000
DELETE_BODY_LIMIT = 2 * 1024 * 1024  # 1000 keys of 1024 bytes, in XML
DELETES_AT_ONCE = 16


async def list_buckets(s: Services, call: Call) -> web.StreamResponse:
    visible = await s.service.list_buckets(call.caller)
    root = xml.root("ListAllMyBucketsResult")
    xml.person(root, "Owner", call.caller.key.tenant if call.caller.key else "")
    buckets = xml.sub(root, "Buckets")
    for record in visible:
        b = xml.sub(buckets, "Bucket")
        xml.sub(b, "Name", record.name)
        xml.sub(b, "CreationDate", xml.iso8601(version_time(record.created)))
    return xml_response(root)


async def create_bucket(s: Services, call: Call) -> web.StreamResponse:
    body = await payload.small_body(call, xml.MAX_XML_BODY)
    constraint = xml.location_constraint(body)
    policy = constraint or s.default_policy
    if not policy:
        raise S3Error("InvalidLocationConstraint",
                      "no LocationConstraint given and this node has no default policy "
                      "(--s3-default-policy): name a residency policy, e.g. france-only")
    names = [p.name for p in s.layout.current.policies]
    if policy not in names:
        raise S3Error("InvalidLocationConstraint",
                      f"LocationConstraint {policy!r} is not a residency policy of this cluster "
                      f"(policies: {', '.join(names)})")
    locked = call.request.headers.get(object_lock.BUCKET_HEADER, "").strip().lower() == "true"
    try:
        await s.service.create_bucket(call.caller, call.bucket, policy, object_lock=locked)
    except BucketAlreadyExists:
        existing = await s.service.coordinator.head_bucket(call.bucket)
        if existing.owner == call.caller.tenant:
            if not constraint and existing.policy == policy:
                # S3's default region (us-east-1) answers 200 to re-creating one's own bucket, and
                # clients count on it (its data is untouched); with a LocationConstraint, 409.
                return web.Response(status=200, headers={"Location": "/" + call.bucket})
            raise S3Error("BucketAlreadyOwnedByYou", f"you already own bucket {call.bucket!r} "
                                                     f"(policy {existing.policy})") from None
        raise
    return web.Response(status=200, headers={"Location": "/" + call.bucket})


async def head_bucket(s: Services, call: Call) -> web.StreamResponse:
    record = await s.service.head_bucket(call.caller, call.bucket)
    return web.Response(status=200, headers={"x-amz-bucket-region": record.policy})


async def delete_bucket(s: Services, call: Call) -> web.StreamResponse:
    await s.service.delete_bucket(call.caller, call.bucket)
    return web.Response(status=204)


async def get_bucket_location(s: Services, call: Call) -> web.StreamResponse:
    record = await s.service.head_bucket(call.caller, call.bucket, "GetBucketLocation")
    root = xml.root("LocationConstraint")
    root.text = record.policy
    return xml_response(root)


# ----- listings ------------------------------------------------------------------------------

def _token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode("utf-8", "surrogatepass")).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "the continuation-token is not one this service gave") from None


def _resume_after(marker: str, prefix: str, delimiter: str) -> str:
    """Where a listing resumes after `marker`: past every key of `marker` when it is a common prefix
    (so a client that passes the last common prefix as its marker does not get it again)."""
    return past(marker) if is_common_prefix(marker, prefix, delimiter) else marker


def _contents(root: ET.Element, m: Manifest, enc: Callable[[str], str], owner: str | None) -> None:
    c = xml.sub(root, "Contents")
    xml.sub(c, "Key", enc(m.key))
    xml.sub(c, "LastModified", xml.iso8601(written_at(m)))
    xml.sub(c, "ETag", objects.etag(m))
    xml.sub(c, "Size", m.size)
    if owner is not None:
        xml.person(c, "Owner", owner)
    xml.sub(c, "StorageClass", storage_class(dict(m.attributes)))


async def list_objects(s: Services, call: Call) -> web.StreamResponse:
    """ListObjects V1 (marker) or V2 (list-type=2: continuation-token, start-after, fetch-owner)."""
    q = call.request.query
    v2 = q.get("list-type") == "2"
    max_keys, enc = query_integer(q, "max-keys", 1000, largest=1000), xml.key_encoder(q)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    token = q.get("continuation-token", "") if v2 else ""
    marker = (_untoken(token) if token else q.get("start-after", "")) if v2 else q.get("marker", "")
    if max_keys == 0:  # the bucket checked, nothing listed
        record, listing = await s.service.head_bucket(call.caller, call.bucket, "ListObjects"), None
    else:
        record, listing = await s.service.list_objects(
            call.caller, call.bucket, prefix=prefix, delimiter=delimiter,
            start_after=_resume_after(marker, prefix, delimiter), max_keys=max_keys)
    owner = record.owner if (not v2 or q.get("fetch-owner") == "true") else None

    root = xml.root("ListBucketResult")
    xml.sub(root, "Name", call.bucket)
    xml.sub(root, "Prefix", enc(prefix))
    if not v2:
        xml.sub(root, "Marker", enc(marker))
    if delimiter:
        xml.sub(root, "Delimiter", enc(delimiter))
    xml.sub(root, "MaxKeys", max_keys)
    if "encoding-type" in q:
        xml.sub(root, "EncodingType", "url")
    if listing is None:
        if v2:
            xml.sub(root, "KeyCount", 0)
        xml.sub(root, "IsTruncated", False)
        return xml_response(root)
    if v2:
        xml.sub(root, "KeyCount", len(listing.contents) + len(listing.common_prefixes))
    xml.sub(root, "IsTruncated", listing.is_truncated)
    if v2:
        if token:
            xml.sub(root, "ContinuationToken", token)
        if listing.is_truncated:
            xml.sub(root, "NextContinuationToken", _token(listing.next_token))
        if "start-after" in q:
            xml.sub(root, "StartAfter", enc(q["start-after"]))
    elif listing.is_truncated:
        last = [m.key for m in listing.contents[-1:]] + listing.common_prefixes[-1:]
        xml.sub(root, "NextMarker", enc(max(last)))
    for m in listing.contents:
        _contents(root, m, enc, owner)
    xml.elements(root, "CommonPrefixes", [enc(p) for p in listing.common_prefixes])
    return xml_response(root)


# ----- DeleteObjects -------------------------------------------------------------------------

async def delete_objects(s: Services, call: Call) -> web.StreamResponse:
    """POST /bucket?delete: up to 1000 keys; each key's outcome is reported, one failure does not
    stop the others (as S3 does)."""
    if "Content-MD5" not in call.request.headers and not any(
            h.lower().startswith("x-amz-checksum-") for h in call.request.headers):
        raise S3Error("InvalidRequest", "DeleteObjects needs a Content-MD5 or x-amz-checksum-* header")
    body = await payload.small_body(call, DELETE_BODY_LIMIT)
    keys, quiet = xml.delete_request(body, MAX_DELETE_KEYS, DELETE_BODY_LIMIT)
    delete = await s.service.delete_objects(call.caller, call.bucket,
                                            bypass_governance=object_lock.bypass_asked(call.request.headers))

    async def one(key: str, version: str | None) -> Deleted | S3Error:
        try:
            return await delete(key, version)
        except Exception as exc:  # reported per key, as S3 does
            error = from_exception(exc)
            if error is None:
                raise
            return error

    outcomes = await gather_bounded([partial(one, k, v) for k, v in keys], DELETES_AT_ONCE)
    root = xml.root("DeleteResult")
    for (key, version), error in zip(keys, outcomes):
        if isinstance(error, Deleted):
            if not quiet:
                d = xml.sub(root, "Deleted")
                xml.sub(d, "Key", key)
                if version is not None:
                    xml.sub(d, "VersionId", version)
                if error.marker:
                    xml.sub(d, "DeleteMarker", True)
                    if version is None and error.version_id is not None:
                        xml.sub(d, "DeleteMarkerVersionId", error.version_id)
        else:
            e = xml.sub(root, "Error")
            xml.sub(e, "Key", key)
            if version is not None:
                xml.sub(e, "VersionId", version[:64])
            xml.sub(e, "Code", error.code)
            xml.sub(e, "Message", error.message)
    return xml_response(root)




# ----- versioning (the model: `node/data/versions.py`) -----------------------------------------

async def get_bucket_versioning(s: Services, call: Call) -> web.StreamResponse:
    state = await s.service.bucket_versioning(call.caller, call.bucket)
    root = xml.root("VersioningConfiguration")
    if state:
        xml.sub(root, "Status", state)
    return xml_response(root)


async def put_bucket_versioning(s: Services, call: Call) -> web.StreamResponse:
    status = versioning.status_from_document(await payload.small_body(call, versioning.MAX_DOCUMENT))
    await s.service.set_bucket_versioning(call.caller, call.bucket, status)
    return web.Response(status=200)


async def list_object_versions(s: Services, call: Call) -> web.StreamResponse:
    q = call.request.query
    max_keys, enc = query_integer(q, "max-keys", 1000, largest=1000), xml.key_encoder(q)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, vid_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
    if vid_marker:
        versioning.check_marker(vid_marker)
        if not key_marker:
            raise S3Error("InvalidArgument", "a version-id-marker needs a key-marker")
    root = xml.root("ListVersionsResult")
    xml.sub(root, "Name", call.bucket)
    xml.sub(root, "Prefix", enc(prefix))
    xml.sub(root, "KeyMarker", enc(key_marker))
    xml.sub(root, "VersionIdMarker", vid_marker)
    xml.sub(root, "MaxKeys", max_keys)
    if delimiter:
        xml.sub(root, "Delimiter", enc(delimiter))
    if "encoding-type" in q:
        xml.sub(root, "EncodingType", "url")
    if max_keys == 0:  # the bucket checked, nothing listed
        await s.service.head_bucket(call.caller, call.bucket, "ListObjectVersions")
        xml.sub(root, "IsTruncated", False)
        return xml_response(root)
    record, listing = await s.service.list_object_versions(
        call.caller, call.bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        version_id_marker=vid_marker, max_keys=max_keys)
    xml.sub(root, "IsTruncated", listing.is_truncated)
    if listing.is_truncated:
        xml.sub(root, "NextKeyMarker", enc(listing.next_key_marker))
        xml.sub(root, "NextVersionIdMarker", listing.next_version_id_marker)
    for v in listing.versions:
        m = v.manifest
        e = xml.sub(root, "DeleteMarker" if v.marker else "Version")
        xml.sub(e, "Key", enc(m.key))
        xml.sub(e, "VersionId", v.version_id)
        xml.sub(e, "IsLatest", v.latest)
        xml.sub(e, "LastModified", xml.iso8601(written_at(m)))
        if not v.marker:
            xml.sub(e, "ETag", objects.etag(m))
            xml.sub(e, "Size", m.size)
            xml.sub(e, "StorageClass", storage_class(dict(m.attributes)))
        xml.person(e, "Owner", record.owner)
    xml.elements(root, "CommonPrefixes", [enc(p) for p in listing.common_prefixes])
    return xml_response(root)


# ----- tags (a setting of the bucket: `node/data/bucket_settings.py`) ------------------------

async def get_bucket_tagging(s: Services, call: Call) -> web.StreamResponse:
    encoded = await s.service.bucket_tags(call.caller, call.bucket)
    if not encoded:
        raise S3Error("NoSuchTagSet", "the bucket has no tag set")
    return xml_response(tagging.document(tagging.decode({tagging.TAGS_ATTRIBUTE: encoded})))


async def put_bucket_tagging(s: Services, call: Call) -> web.StreamResponse:
    tags = tagging.from_document(await payload.small_body(call, tagging.MAX_DOCUMENT))
    await s.service.set_bucket_tags(call.caller, call.bucket, tagging.encode(tags), "PutBucketTagging")
    return web.Response(status=204)


async def delete_bucket_tagging(s: Services, call: Call) -> web.StreamResponse:
    await s.service.set_bucket_tags(call.caller, call.bucket, "", "DeleteBucketTagging")
    return web.Response(status=204)


# ----- default encryption (every object is encrypted at rest: `encryption`) -------------------

async def get_bucket_encryption(s: Services, call: Call) -> web.StreamResponse:
    await s.service.head_bucket(call.caller, call.bucket, "GetBucketEncryption")
    return xml_response(encryption.bucket_document())


async def put_bucket_encryption(s: Services, call: Call) -> web.StreamResponse:
    await s.service.head_bucket(call.caller, call.bucket, "PutBucketEncryption")
    encryption.check_bucket_document(await payload.small_body(call, encryption.MAX_DOCUMENT))
    return web.Response(status=200)


async def delete_bucket_encryption(s: Services, call: Call) -> web.StreamResponse:
    await s.service.head_bucket(call.caller, call.bucket, "DeleteBucketEncryption")
    return web.Response(status=204)  # the default stays: AES256 at rest
