"""Bucket policies at the S3 door: PutBucketPolicy (a JSON document, parsed and bounded by
`service/bucket_policy.py` before anything is stored), GetBucketPolicy (the document as its owner
sent it), DeleteBucketPolicy and GetBucketPolicyStatus. Who the policy lets in is decided in the
service layer, for both doors (`service/bucket_access.py`)."""

from __future__ import annotations

from aiohttp import web

from maillage.node.s3 import payload, xml
from maillage.node.s3.common import Call, Services, xml_response
from maillage.node.s3.errors import S3Error
from maillage.node.service.bucket_policy import MAX_DOCUMENT, parse

__all__ = ["delete_policy", "get_policy", "get_policy_status", "put_policy"]


def _none(bucket: str) -> S3Error:
    return S3Error("NoSuchBucketPolicy", f"bucket {bucket!r} has no policy")


async def get_policy(s: Services, call: Call) -> web.StreamResponse:
    text = await s.service.bucket_policy(call.caller, call.bucket)
    if not text:
        raise _none(call.bucket)
    return web.Response(status=200, body=text.encode(), content_type="application/json")


async def put_policy(s: Services, call: Call) -> web.StreamResponse:
    try:
        body = await payload.small_body(call, MAX_DOCUMENT)
    except S3Error as exc:
        if exc.code != "MaxMessageLengthExceeded":
            raise
        raise S3Error("MalformedPolicy", f"a bucket policy is at most {MAX_DOCUMENT} bytes") from None
    policy = parse(body, call.bucket)  # MalformedPolicy, with the reason in words
    await s.service.set_bucket_policy(call.caller, call.bucket, body.decode(), policy, "PutBucketPolicy")
    return web.Response(status=204)


async def delete_policy(s: Services, call: Call) -> web.StreamResponse:
    await s.service.set_bucket_policy(call.caller, call.bucket, "", None, "DeleteBucketPolicy")
    return web.Response(status=204)


async def get_policy_status(s: Services, call: Call) -> web.StreamResponse:
    public = await s.service.bucket_policy_status(call.caller, call.bucket)
    if public is None:
        raise _none(call.bucket)
    root = xml.root("PolicyStatus")
    xml.sub(root, "IsPublic", public)
    return xml_response(root)
