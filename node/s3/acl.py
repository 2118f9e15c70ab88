"""Access control lists, answered as S3 answers them with "bucket owner enforced" ownership (its
default for new buckets since 2023): the bucket's owner tenant has full control of the bucket and
of every object in it.

Reading an ACL (GetBucketAcl, GetObjectAcl) says exactly that, plus the bucket's group grant if it
has one. An ACL a write or PutBucketAcl / PutObjectAcl sets that says the same (`x-amz-acl:
private` or `bucket-owner-full-control`, which clients such as rclone and s3cmd send by default,
or a document granting the owner alone FULL_CONTROL) is accepted. A bucket may also be given the
canned ACL public-read or authenticated-read (a READ grant to the AllUsers or AuthenticatedUsers
group), which stands for bucket policy statements (`service/bucket_policy.canned_acl`) under the
bucket's public access block (`service/bucket_access.py`). Any other ACL (public on an object, a
grant to another account) is refused with AccessControlListNotSupported before anything is stored,
never ignored: a client that asked for a public object must not believe it has one.

Ownership controls are BucketOwnerEnforced on every bucket: reading them says so; writing what
holds anyway is accepted; anything else is refused with words. The public access block is a
setting of the bucket (all four flags set until its owner changes them).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from aiohttp import web

from maillage.node.s3 import payload, xml
from maillage.node.s3.common import Call, Services, xml_response
from maillage.node.s3.errors import S3Error
from maillage.node.service.bucket_policy import CANNED_ACLS, AccessBlock

__all__ = ["TAKES_ACL", "check_request", "get_bucket_acl", "put_bucket_acl", "get_object_acl", "put_object_acl",
           "get_ownership_controls", "put_ownership_controls", "get_public_access_block",
           "put_public_access_block", "delete_public_access_block", "access_block_from_document"]

#: Operations whose request may carry an ACL in its headers.
TAKES_ACL = frozenset({"CreateBucket", "PutObject", "CopyObject", "CreateMultipartUpload"})
OWNER_ONLY = frozenset({"private", "bucket-owner-full-control"})
GRANT_HEADERS = ("x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
                 "x-amz-grant-full-control")
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_GROUPS = {"http://acs.amazonaws.com/groups/global/AllUsers": "public-read",
           "http://acs.amazonaws.com/groups/global/AuthenticatedUsers": "authenticated-read"}
ENFORCED = "BucketOwnerEnforced"
BLOCKS = AccessBlock.NAMES


def _not_supported(what: str) -> S3Error:
    return S3Error("AccessControlListNotSupported",
                   f"{what}: ACLs are disabled here (the bucket's owner has full control of it and of its "
                   "objects, nobody else); only private or bucket-owner-full-control is accepted")


def check_request(headers: Mapping[str, str]) -> None:
    """A request's x-amz-acl and x-amz-grant-* headers: accepted only when they give the owner alone
    full control (what holds anyway)."""
    canned = headers.get("x-amz-acl")
    if canned is not None and canned.strip().lower() not in OWNER_ONLY:
        raise _not_supported(f"x-amz-acl {canned.strip()[:40]!r}")
    for name in GRANT_HEADERS:
        if name in headers:
            raise _not_supported(f"{name}")


def document(owner: str, canned: str = "private") -> ET.Element:
    """The ACL of a bucket or object: its bucket's owner with FULL_CONTROL, and READ for everyone
    (public-read) or every key holder (authenticated-read) when the bucket's canned ACL says so."""
    root = xml.root("AccessControlPolicy")
    xml.person(root, "Owner", owner)
    grants = xml.sub(root, "AccessControlList")
    grant = xml.sub(grants, "Grant")
    grantee = xml.sub(grant, "Grantee")
    grantee.set("xmlns:xsi", _XSI)
    grantee.set("xsi:type", "CanonicalUser")
    xml.sub(grantee, "ID", owner)
    xml.sub(grantee, "DisplayName", owner)
    xml.sub(grant, "Permission", "FULL_CONTROL")
    group = next((uri for uri, name in _GROUPS.items() if name == canned), None)
    if group is not None:
        grant = xml.sub(grants, "Grant")
        grantee = xml.sub(grant, "Grantee")
        grantee.set("xmlns:xsi", _XSI)
        grantee.set("xsi:type", "Group")
        xml.sub(grantee, "URI", group)
        xml.sub(grant, "Permission", "READ")
    return root


def _canned_of_body(body: bytes, owner: str) -> str:
    """The canned ACL an AccessControlPolicy document amounts to: the owner's FULL_CONTROL, and at
    most READ to AllUsers (public-read) or AuthenticatedUsers (authenticated-read); else refused."""
    root = xml.parse(body, "AccessControlPolicy")
    canned = "private"
    for grant in (e for e in root.iter() if xml.local_name(e.tag) == "Grant"):
        grantee = next((e for e in grant if xml.local_name(e.tag) == "Grantee"), None)
        ids = [] if grantee is None else [e.text or "" for e in grantee if xml.local_name(e.tag) == "ID"]
        uris = [] if grantee is None else [(e.text or "").strip() for e in grantee if xml.local_name(e.tag) == "URI"]
        permission = "".join(e.text or "" for e in grant if xml.local_name(e.tag) == "Permission")
        if ids == [owner] and not uris and permission == "FULL_CONTROL":
            continue
        if not ids and len(uris) == 1 and uris[0] in _GROUPS and permission == "READ" and canned == "private":
            canned = _GROUPS[uris[0]]
            continue
        raise _not_supported(f"a grant of {permission[:20] or 'nothing'} to {(ids or uris or ['someone'])[0][:60]!r}")
    return canned


async def get_bucket_acl(s: Services, call: Call) -> web.StreamResponse:
    record, canned = await s.service.bucket_acl(call.caller, call.bucket)
    return xml_response(document(record.owner, canned))


async def put_bucket_acl(s: Services, call: Call) -> web.StreamResponse:
    """A canned ACL (x-amz-acl) or its document: private and bucket-owner-full-control, or, once the
    owner lifted BlockPublicAcls, public-read and authenticated-read (reads a bucket policy would grant)."""
    record, _ = await s.service.bucket_acl(call.caller, call.bucket, "PutBucketAcl")
    headers = call.request.headers
    if any(name in headers for name in GRANT_HEADERS):
        raise _not_supported("x-amz-grant-* headers")
    body = await payload.small_body(call, xml.MAX_XML_BODY)
    canned = headers.get("x-amz-acl", "").strip().lower()
    if body.strip():
        if canned:
            raise S3Error("InvalidRequest", "give an x-amz-acl header or an AccessControlPolicy body, not both")
        canned = _canned_of_body(body, record.owner)
    elif not canned:
        raise S3Error("MissingSecurityHeader", "PutBucketAcl needs an x-amz-acl header or an AccessControlPolicy body")
    if canned not in CANNED_ACLS:
        raise _not_supported(f"x-amz-acl {canned[:40]!r}")
    await s.service.set_bucket_acl(call.caller, call.bucket, canned)
    return web.Response(status=200)


async def _put(call: Call, owner: str) -> web.StreamResponse:
    """An object's ACL: what holds anyway (the owner's FULL_CONTROL); its bucket's ACL says who else reads."""
    check_request(call.request.headers)
    body = await payload.small_body(call, xml.MAX_XML_BODY)
    if body.strip():
        if _canned_of_body(body, owner) != "private":
            raise _not_supported("a grant to a group on an object (give the bucket its ACL instead)")
    elif "x-amz-acl" not in call.request.headers:
        raise S3Error("MissingSecurityHeader", "PutAcl needs an x-amz-acl header or an AccessControlPolicy body")
    return web.Response(status=200)


async def get_object_acl(s: Services, call: Call) -> web.StreamResponse:
    record, _ = await s.service.head_object(call.caller, call.bucket, call.key, "GetObjectAcl")
    _, canned = await s.service.bucket_acl(call.caller, call.bucket, "GetObjectAcl")
    return xml_response(document(record.owner, canned))


async def put_object_acl(s: Services, call: Call) -> web.StreamResponse:
    record, _ = await s.service.head_object(call.caller, call.bucket, call.key, "PutObjectAcl")
    return await _put(call, record.owner)


async def get_ownership_controls(s: Services, call: Call) -> web.StreamResponse:
    await s.service.head_bucket(call.caller, call.bucket, "GetBucketOwnershipControls")
    root = xml.root("OwnershipControls")
    xml.sub(xml.sub(root, "Rule"), "ObjectOwnership", ENFORCED)
    return xml_response(root)


async def put_ownership_controls(s: Services, call: Call) -> web.StreamResponse:
    await s.service.head_bucket(call.caller, call.bucket, "PutBucketOwnershipControls")
    root = xml.parse(await payload.small_body(call, xml.MAX_XML_BODY), "OwnershipControls")
    asked = [e.text or "" for e in root.iter() if xml.local_name(e.tag) == "ObjectOwnership"]
    if not asked or any(a != ENFORCED for a in asked):
        raise S3Error("InvalidRequest", f"ObjectOwnership {(asked or [''])[0][:40]!r}: only {ENFORCED} is served "
                                        "(ACLs are disabled: the bucket's owner owns every object in it)")
    return web.Response(status=200)


async def get_public_access_block(s: Services, call: Call) -> web.StreamResponse:
    block = await s.service.access_block(call.caller, call.bucket)
    root = xml.root("PublicAccessBlockConfiguration")
    for name, flag in zip(BLOCKS, block.flags(), strict=True):
        xml.sub(root, name, flag)
    return xml_response(root)


def access_block_from_document(body: bytes) -> AccessBlock:
    """A PublicAccessBlockConfiguration: each flag at most once, true or false; one left out is
    false, as on S3."""
    root = xml.parse(body, "PublicAccessBlockConfiguration")
    given: dict[str, str] = {}
    for element in root:
        name = xml.local_name(element.tag)
        value = (element.text or "").strip().lower()
        if name not in BLOCKS or name in given or value not in ("true", "false") or len(element):
            raise S3Error("MalformedXML", f"a PublicAccessBlockConfiguration holds each of {', '.join(BLOCKS)} "
                                          "at most once, true or false")
        given[name] = value
    return AccessBlock(*(given.get(name) == "true" for name in BLOCKS))


async def put_public_access_block(s: Services, call: Call) -> web.StreamResponse:
    block = access_block_from_document(await payload.small_body(call, xml.MAX_XML_BODY))
    await s.service.set_access_block(call.caller, call.bucket, block, "PutPublicAccessBlock")
    return web.Response(status=200)


async def delete_public_access_block(s: Services, call: Call) -> web.StreamResponse:
    """No block at all, as S3 has it once deleted."""
    await s.service.set_access_block(call.caller, call.bucket, AccessBlock(False, False, False, False),
                                     "DeletePublicAccessBlock")
    return web.Response(status=204)

