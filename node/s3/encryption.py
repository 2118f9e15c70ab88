"""Server-side encryption as S3 clients ask for it.

Every byte a node stores is already sealed at rest with AES-256-GCM under per-tenant data keys
(`storage/keys.py`), so SSE-S3 (``x-amz-server-side-encryption: AES256``) is what every object has:
asking for it is accepted, and every object answer says so, as S3 does since it encrypts every new
object. Bucket default encryption is that same rule: GetBucketEncryption shows it, PutBucketEncryption
accepts it (and nothing else), DeleteBucketEncryption leaves it. SSE-KMS needs a key service this
cluster has not got: refused with words saying so, never silently stored unencrypted-as-asked.

SSE-C (the customer's key on each request, `data/customer_keys.py`) is served on PutObject,
GetObject, HeadObject, GetObjectAttributes, CopyObject and UploadPartCopy (either side, any two
kinds), CreateMultipartUpload and UploadPart, over TLS only (the key is in the request's headers).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from maillage.node.data.customer_keys import CustomerKey
from maillage.node.s3 import xml
from maillage.node.s3.errors import S3Error

__all__ = ["AT_REST", "HEADER", "CUSTOMER_ALGORITHM", "COPY_SOURCE", "bucket_document", "check_bucket_document",
           "check_request", "customer_key", "customer_headers"]

HEADER = "x-amz-server-side-encryption"
AT_REST = "AES256"
_OWN = "x-amz-"
COPY_SOURCE = "x-amz-copy-source-"   # the prefix of the copy source's key headers (instead of x-amz-)
_ALGORITHM, _KEY, _MD5 = ("server-side-encryption-customer-algorithm", "server-side-encryption-customer-key",
                          "server-side-encryption-customer-key-md5")
CUSTOMER_ALGORITHM = _OWN + _ALGORITHM
_CUSTOMER = (CUSTOMER_ALGORITHM, COPY_SOURCE + _ALGORITHM)
#: Operations that take a customer key (and CopyObject a source's too).
TAKES_CUSTOMER_KEY = frozenset({"PutObject", "GetObject", "HeadObject", "GetObjectAttributes", "CopyObject",
                                "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload"})
MAX_DOCUMENT = 8 * 1024


def check_request(headers: Mapping[str, str], operation: str, *, secure: bool) -> None:
    """Refuse what cannot be honoured (SSE-KMS, an unknown algorithm, a customer key where it is
    not served or over plain HTTP); AES256 passes."""
    asked = headers.get(HEADER)
    if asked is not None and asked != AT_REST:
        if asked.startswith("aws:kms"):
            raise S3Error("NotImplemented", "SSE-KMS is not configured on this cluster: every object is already "
                                            "encrypted at rest (AES-256); ask for AES256 or for nothing")
        raise S3Error("InvalidArgument", f"x-amz-server-side-encryption {asked[:40]!r}: use AES256")
    if any(name in headers for name in _CUSTOMER):
        if operation not in TAKES_CUSTOMER_KEY:
            raise S3Error("NotImplemented", f"{operation} with a customer-provided key (SSE-C) is not served; "
                                            "copy the object with CopyObject instead")
        if not secure:
            raise S3Error("InvalidRequest", "requests with a customer-provided key (SSE-C) must be made over "
                                            "HTTPS: the key would cross the network in clear")
        if asked is not None:
            raise S3Error("InvalidArgument", "ask for a customer-provided key or for x-amz-server-side-encryption, "
                                             "not both")


def customer_key(headers: Mapping[str, str], prefix: str = _OWN) -> CustomerKey | None:
    """The customer key a request sends (`prefix` COPY_SOURCE: its copy source's), None without one."""
    algorithm = headers.get(prefix + _ALGORITHM)
    if algorithm is None:
        if prefix + _KEY in headers or prefix + _MD5 in headers:
            raise S3Error("InvalidArgument", f"{prefix}{_KEY} needs {prefix}{_ALGORITHM}")
        return None
    return CustomerKey.parse(algorithm, headers.get(prefix + _KEY, ""), headers.get(prefix + _MD5, ""))


def customer_headers(key: CustomerKey | None) -> dict[str, str]:
    """What an answer about an object written with a customer key says (the key's MD5 as sent)."""
    if key is None:
        return {}
    return {CUSTOMER_ALGORITHM: AT_REST, _OWN + _MD5: key.md5}


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
