"""Server-side encryption as S3 clients ask for it.

Every byte a node stores is already sealed at rest with AES-256-GCM under per-tenant data keys
(`storage/keys.py`), so SSE-S3 (``x-amz-server-side-encryption: AES256``) is what every object has:
asking for it is accepted, and every object answer says so, as S3 does since it encrypts every new
object. Bucket default encryption is that same rule: GetBucketEncryption shows it, PutBucketEncryption
accepts it (and nothing else), DeleteBucketEncryption leaves it. SSE-KMS needs a key service this
cluster has not got, and SSE-C (the customer's key on each request) is not served yet: both are
refused with words saying so, never silently stored unencrypted-as-asked.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from maillage.node.s3 import xml
from maillage.node.s3.errors import S3Error

__all__ = ["AT_REST", "HEADER", "bucket_document", "check_bucket_document", "check_request"]

HEADER = "x-amz-server-side-encryption"
AT_REST = "AES256"
_CUSTOMER = ("x-amz-server-side-encryption-customer-algorithm",
             "x-amz-copy-source-server-side-encryption-customer-algorithm")
MAX_DOCUMENT = 8 * 1024


def check_request(headers: Mapping[str, str]) -> None:
    """Refuse what cannot be honoured (SSE-KMS, SSE-C, an unknown algorithm); AES256 passes."""
    asked = headers.get(HEADER)
    if asked is not None and asked != AT_REST:
        if asked.startswith("aws:kms"):
            raise S3Error("NotImplemented", "SSE-KMS is not configured on this cluster: every object is already "
                                            "encrypted at rest (AES-256); ask for AES256 or for nothing")
        raise S3Error("InvalidArgument", f"x-amz-server-side-encryption {asked[:40]!r}: use AES256")
    if any(name in headers for name in _CUSTOMER):
        raise S3Error("NotImplemented", "SSE-C (a customer-provided key) is not served yet; every object is "
                                        "encrypted at rest with the cluster's keys (AES-256)")


def bucket_document() -> ET.Element:
    """A bucket's default encryption: AES256 for every object."""
    root = xml.root("ServerSideEncryptionConfiguration")
    rule = xml.sub(root, "Rule")
    default = xml.sub(rule, "ApplyServerSideEncryptionByDefault")
    xml.sub(default, "SSEAlgorithm", AT_REST)
    xml.sub(rule, "BucketKeyEnabled", False)
    return root


def check_bucket_document(body: bytes) -> None:
    """A PutBucketEncryption document: every rule must ask for AES256 (what every object has)."""
    root = xml.parse(body, "ServerSideEncryptionConfiguration", MAX_DOCUMENT)
    algorithms = [(e.text or "").strip() for e in root.iter() if xml.local_name(e.tag) == "SSEAlgorithm"]
    if not algorithms:
        raise S3Error("MalformedXML", "the encryption configuration names no SSEAlgorithm")
    for algorithm in algorithms:
        if algorithm.startswith("aws:kms"):
            raise S3Error("NotImplemented", "SSE-KMS is not configured on this cluster: objects are encrypted "
                                            "at rest with AES-256 already")
        if algorithm != AT_REST:
            raise S3Error("MalformedXML", f"SSEAlgorithm {algorithm[:40]!r}: use AES256")
