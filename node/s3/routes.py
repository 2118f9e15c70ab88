"""Which S3 operation a request is: its method, whether it names a bucket and a key, and its
sub-resources (the query parameters that select an operation, such as ?uploads or ?delete)."""

from __future__ import annotations

from collections.abc import Mapping

from maillage.node.s3 import buckets, multipart, objects
from maillage.node.s3.common import Handler
from maillage.node.s3.errors import S3Error

__all__ = ["operation", "KNOWN_QUERY"]

# Query parameters this front door understands; any other (acl, tagging, versioning...) names an
# operation it does not serve, answered NotImplemented rather than silently ignored.
KNOWN_QUERY = frozenset({
    "location", "list-type", "prefix", "delimiter", "continuation-token", "max-keys", "start-after",
    "encoding-type", "fetch-owner", "marker", "x-id", "delete", "uploads", "uploadId", "partNumber",
    "max-parts", "part-number-marker", "max-uploads", "key-marker", "upload-id-marker",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding",
    # presigned URLs (sigv4.py)
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
    "X-Amz-Signature", "X-Amz-Security-Token", "x-amz-checksum-mode", "X-Amz-Content-Sha256",
})


def operation(method: str, bucket: str, key: str, query: Mapping[str, str],
              headers: Mapping[str, str]) -> Handler:
    unknown = set(query) - KNOWN_QUERY
    if unknown:
        raise S3Error("NotImplemented", f"sub-resource(s) {', '.join(sorted(unknown))} not supported")
    if not bucket:
        if method == "GET":
            return buckets.list_buckets
    elif not key:
        if method == "PUT":
            return buckets.create_bucket
        if method == "HEAD":
            return buckets.head_bucket
        if method == "DELETE":
            return buckets.delete_bucket
        if method == "POST" and "delete" in query:
            return buckets.delete_objects
        if method == "GET":
            if "location" in query:
                return buckets.get_bucket_location
            if "uploads" in query:
                return multipart.list_uploads
            return buckets.list_objects
    else:
        upload = "uploadId" in query
        if method == "PUT":
            if upload and "partNumber" in query:
                copy = "x-amz-copy-source" in headers
                return multipart.upload_part_copy if copy else multipart.upload_part
            if "x-amz-copy-source" in headers:
                return objects.copy_object
            return objects.put_object
        if method == "POST":
            if "uploads" in query:
                return multipart.create_upload
            if upload:
                return multipart.complete_upload
        if method == "GET":
            return multipart.list_parts if upload else objects.get_object
        if method == "HEAD":
            return objects.head_object
        if method == "DELETE":
            return multipart.abort_upload if upload else objects.delete_object
    raise S3Error("MethodNotAllowed", f"{method} is not allowed on this resource")
