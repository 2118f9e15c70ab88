"""Which S3 operation a request is: its method, whether it names a bucket and a key, and its
sub-resources (the query parameters that select an operation, such as ?uploads or ?delete). Each
operation is named as in the rule table both doors share, which decides who may call it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from maillage.node.s3 import acl, buckets, cors, lifecycle, multipart, object_lock, objects, policy, post_object
from maillage.node.s3.common import Handler
from maillage.node.s3.errors import S3Error

__all__ = ["KNOWN_QUERY", "ROUTES", "Route", "operation"]

# Query parameters this front door understands; any other (acl, lifecycle...) names an
# operation it does not serve, answered NotImplemented rather than silently ignored.
KNOWN_QUERY = frozenset({
    "location", "list-type", "prefix", "delimiter", "continuation-token", "max-keys", "start-after",
    "encoding-type", "fetch-owner", "marker", "x-id", "delete", "uploads", "uploadId", "partNumber", "tagging", "acl",
    "ownershipControls", "publicAccessBlock", "policy", "policyStatus", "object-lock", "retention", "legal-hold",
    "lifecycle",
    "encryption", "attributes", "versioning", "cors", "versions", "versionId", "version-id-marker",
    "max-parts", "part-number-marker", "max-uploads", "key-marker", "upload-id-marker",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding",
    # presigned URLs (sigv4.py)
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
    "X-Amz-Signature", "X-Amz-Security-Token", "x-amz-checksum-mode", "X-Amz-Content-Sha256",
})


@dataclass(frozen=True)
class Route:
    """An S3 operation: its name in the rule table (`maillage.node.service.rules`) and its handler."""

    operation: str
    handler: Handler


_HANDLERS: Mapping[str, Handler] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "HeadBucket": buckets.head_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "DeleteObjects": buckets.delete_objects,
    "GetBucketLocation": buckets.get_bucket_location,
    "ListMultipartUploads": multipart.list_uploads,
    "ListObjects": buckets.list_objects,
    "UploadPartCopy": multipart.upload_part_copy,
    "UploadPart": multipart.upload_part,
    "CopyObject": objects.copy_object,
    "PutObject": objects.put_object,
    "PostObject": post_object.post_object,
    "CreateMultipartUpload": multipart.create_upload,
    "CompleteMultipartUpload": multipart.complete_upload,
    "ListParts": multipart.list_parts,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "AbortMultipartUpload": multipart.abort_upload,
    "DeleteObject": objects.delete_object,
    "GetBucketEncryption": buckets.get_bucket_encryption,
    "PutBucketEncryption": buckets.put_bucket_encryption,
    "DeleteBucketEncryption": buckets.delete_bucket_encryption,
    "GetObjectAttributes": objects.get_object_attributes,
    "GetObjectTagging": objects.get_object_tagging,
    "PutObjectTagging": objects.put_object_tagging,
    "DeleteObjectTagging": objects.delete_object_tagging,
    "GetBucketTagging": buckets.get_bucket_tagging,
    "PutBucketTagging": buckets.put_bucket_tagging,
    "DeleteBucketTagging": buckets.delete_bucket_tagging,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "PutBucketVersioning": buckets.put_bucket_versioning,
    "ListObjectVersions": buckets.list_object_versions,
    "GetBucketAcl": acl.get_bucket_acl,
    "PutBucketAcl": acl.put_bucket_acl,
    "GetObjectAcl": acl.get_object_acl,
    "PutObjectAcl": acl.put_object_acl,
    "GetBucketOwnershipControls": acl.get_ownership_controls,
    "PutBucketOwnershipControls": acl.put_ownership_controls,
    "GetPublicAccessBlock": acl.get_public_access_block,
    "PutPublicAccessBlock": acl.put_public_access_block,
    "DeletePublicAccessBlock": acl.delete_public_access_block,
    "GetBucketPolicy": policy.get_policy,
    "PutBucketPolicy": policy.put_policy,
    "DeleteBucketPolicy": policy.delete_policy,
    "GetBucketPolicyStatus": policy.get_policy_status,
    "GetBucketCors": cors.get_cors,
    "PutBucketCors": cors.put_cors,
    "DeleteBucketCors": cors.delete_cors,
    "GetBucketLifecycleConfiguration": lifecycle.get_lifecycle,
    "PutBucketLifecycleConfiguration": lifecycle.put_lifecycle,
    "DeleteBucketLifecycle": lifecycle.delete_lifecycle,
    "GetObjectLockConfiguration": object_lock.get_configuration,
    "PutObjectLockConfiguration": object_lock.put_configuration,
    "GetObjectRetention": object_lock.get_retention,
    "PutObjectRetention": object_lock.put_retention,
    "GetObjectLegalHold": object_lock.get_legal_hold,
    "PutObjectLegalHold": object_lock.put_legal_hold,
}
_ENCRYPTION = {"GET": "GetBucketEncryption", "PUT": "PutBucketEncryption", "DELETE": "DeleteBucketEncryption"}
_TAGGING = {"GET": "GetObjectTagging", "PUT": "PutObjectTagging", "DELETE": "DeleteObjectTagging"}
_BUCKET_TAGGING = {"GET": "GetBucketTagging", "PUT": "PutBucketTagging", "DELETE": "DeleteBucketTagging"}
_VERSIONING = {"GET": "GetBucketVersioning", "PUT": "PutBucketVersioning"}
_BUCKET_ACL = {"GET": "GetBucketAcl", "PUT": "PutBucketAcl"}
_OBJECT_ACL = {"GET": "GetObjectAcl", "PUT": "PutObjectAcl"}
_OWNERSHIP = {"GET": "GetBucketOwnershipControls", "PUT": "PutBucketOwnershipControls"}
_PUBLIC_ACCESS = {"GET": "GetPublicAccessBlock", "PUT": "PutPublicAccessBlock", "DELETE": "DeletePublicAccessBlock"}
_POLICY = {"GET": "GetBucketPolicy", "PUT": "PutBucketPolicy", "DELETE": "DeleteBucketPolicy"}
_CORS = {"GET": "GetBucketCors", "PUT": "PutBucketCors", "DELETE": "DeleteBucketCors"}
_LOCK = {"GET": "GetObjectLockConfiguration", "PUT": "PutObjectLockConfiguration"}
_LIFECYCLE = {"GET": "GetBucketLifecycleConfiguration", "PUT": "PutBucketLifecycleConfiguration",
              "DELETE": "DeleteBucketLifecycle"}
_RETENTION = {"GET": "GetObjectRetention", "PUT": "PutObjectRetention"}
_LEGAL_HOLD = {"GET": "GetObjectLegalHold", "PUT": "PutObjectLegalHold"}
# Sub-resources that select an operation: one a method does not have is refused, never served as
# the plain operation of the bucket or object (a DELETE ?versioning is not a DeleteBucket).
_BUCKET_SELECTORS = frozenset({"tagging", "acl", "object-lock", "lifecycle", "encryption", "versioning", "versions",
                               "policy", "policyStatus", "cors"})
_OBJECT_SELECTORS = frozenset({"attributes", "tagging", "acl", "retention", "legal-hold"})
ROUTES: Mapping[str, Route] = {name: Route(name, handler) for name, handler in _HANDLERS.items()}


def operation(method: str, bucket: str, key: str, query: Mapping[str, str],
              headers: Mapping[str, str]) -> Route:
    unknown = set(query) - KNOWN_QUERY
    if unknown:
        raise S3Error("NotImplemented", f"sub-resource(s) {', '.join(sorted(unknown))} not supported")
    if not bucket:
        if method == "GET":
            return ROUTES["ListBuckets"]
    elif not key:
        if "tagging" in query and method in _BUCKET_TAGGING:
            return ROUTES[_BUCKET_TAGGING[method]]
        if "acl" in query and method in _BUCKET_ACL:
            return ROUTES[_BUCKET_ACL[method]]
        if "ownershipControls" in query and method in _OWNERSHIP:
            return ROUTES[_OWNERSHIP[method]]
        if "publicAccessBlock" in query and method in _PUBLIC_ACCESS:
            return ROUTES[_PUBLIC_ACCESS[method]]
        if "ownershipControls" in query:
            raise S3Error("NotImplemented", "ownership controls cannot be removed: every bucket is owner-enforced")
        if "publicAccessBlock" in query:
            raise S3Error("MethodNotAllowed", f"{method} is not allowed on this sub-resource")
        if "policy" in query and method in _POLICY:
            return ROUTES[_POLICY[method]]
        if "policyStatus" in query and method == "GET":
            return ROUTES["GetBucketPolicyStatus"]
        if "object-lock" in query and method in _LOCK:
            return ROUTES[_LOCK[method]]
        if "cors" in query and method in _CORS:
            return ROUTES[_CORS[method]]
        if "lifecycle" in query and method in _LIFECYCLE:
            return ROUTES[_LIFECYCLE[method]]
        if "encryption" in query and method in _ENCRYPTION:
            return ROUTES[_ENCRYPTION[method]]
        if "versioning" in query and method in _VERSIONING:
            return ROUTES[_VERSIONING[method]]
        if "versions" in query and method == "GET":
            return ROUTES["ListObjectVersions"]
        if _BUCKET_SELECTORS & query.keys():  # e.g. DELETE ?versioning: never taken for DeleteBucket
            raise S3Error("MethodNotAllowed", f"{method} is not allowed on this sub-resource")
        if method == "PUT":
            return ROUTES["CreateBucket"]
        if method == "HEAD":
            return ROUTES["HeadBucket"]
        if method == "DELETE":
            return ROUTES["DeleteBucket"]
        if method == "POST" and "delete" in query:
            return ROUTES["DeleteObjects"]
        if method == "POST" and not query and headers.get("Content-Type", "").startswith("multipart/form-data"):
            return ROUTES["PostObject"]
        if method == "GET":
            if "location" in query:
                return ROUTES["GetBucketLocation"]
            if "uploads" in query:
                return ROUTES["ListMultipartUploads"]
            return ROUTES["ListObjects"]
    else:
        upload = "uploadId" in query
        if "attributes" in query and method == "GET":
            return ROUTES["GetObjectAttributes"]
        if "tagging" in query and method in _TAGGING:
            return ROUTES[_TAGGING[method]]
        if "acl" in query and method in _OBJECT_ACL:
            return ROUTES[_OBJECT_ACL[method]]
        if "retention" in query and method in _RETENTION:
            return ROUTES[_RETENTION[method]]
        if "legal-hold" in query and method in _LEGAL_HOLD:
            return ROUTES[_LEGAL_HOLD[method]]
        if _OBJECT_SELECTORS & query.keys():  # e.g. DELETE ?retention: never taken for DeleteObject
            raise S3Error("MethodNotAllowed", f"{method} is not allowed on this sub-resource")
        if method == "PUT":
            if upload and "partNumber" in query:
                copy = "x-amz-copy-source" in headers
                return ROUTES["UploadPartCopy"] if copy else ROUTES["UploadPart"]
            if "x-amz-copy-source" in headers:
                return ROUTES["CopyObject"]
            return ROUTES["PutObject"]
        if method == "POST":
            if "uploads" in query:
                return ROUTES["CreateMultipartUpload"]
            if upload:
                return ROUTES["CompleteMultipartUpload"]
        if method == "GET":
            return ROUTES["ListParts"] if upload else ROUTES["GetObject"]
        if method == "HEAD":
            return ROUTES["HeadObject"]
        if method == "DELETE":
            return ROUTES["AbortMultipartUpload"] if upload else ROUTES["DeleteObject"]
    raise S3Error("MethodNotAllowed", f"{method} is not allowed on this resource")
