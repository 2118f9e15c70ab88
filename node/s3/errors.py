"""S3 errors as S3 XML: standard codes and HTTP statuses, the node's typed errors mapped by one table."""

from __future__ import annotations

import secrets

from maillage.node import errors as node_errors
from maillage.node.runtime.budget import Overloaded
from maillage.placement.errors import PolicyUnsatisfiable, UnknownPolicy
from maillage.storage.errors import CorruptFrame

__all__ = ["S3Error", "from_exception", "new_request_id"]

# code -> HTTP status
STATUS = {
    "AccessDenied": 403,
    "InvalidAccessKeyId": 403,
    "SignatureDoesNotMatch": 403,
    "RequestTimeTooSkewed": 403,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "InvalidBucketName": 400,
    "InvalidArgument": 400,
    "InvalidRequest": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "EntityTooSmall": 400,
    "NoSuchUpload": 404,
    "PreconditionFailed": 412,
    "NotModified": 304,
    "MaxMessageLengthExceeded": 400,
    "IncompleteBody": 400,
    "AuthorizationQueryParametersError": 400,
    "InvalidLocationConstraint": 400,
    "InvalidRange": 416,
    "MalformedXML": 400,
    "XAmzContentSHA256Mismatch": 400,
    "BadDigest": 400,
    "MissingContentLength": 411,
    "EntityTooLarge": 400,
    "MethodNotAllowed": 405,
    "NotImplemented": 501,
    "SlowDown": 503,
    "ServiceUnavailable": 503,
    "InternalError": 500,
}


class S3Error(Exception):
    def __init__(self, code: str, message: str, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS.get(code, 400)
        self.headers = headers or {}  # e.g. the ETag of a 304 Not Modified


# The node's typed errors -> S3 codes; the first class that matches wins (subclasses first).
TABLE: tuple[tuple[type[BaseException], str], ...] = (
    (node_errors.AccessDenied, "AccessDenied"),
    (node_errors.InvalidBucketName, "InvalidBucketName"),
    (node_errors.InvalidArgument, "InvalidArgument"),
    (node_errors.NoSuchBucket, "NoSuchBucket"),
    (node_errors.NoSuchKey, "NoSuchKey"),
    (node_errors.BucketAlreadyExists, "BucketAlreadyExists"),
    (node_errors.BucketNotEmpty, "BucketNotEmpty"),
    (node_errors.OutsidePolicy, "AccessDenied"),
    (node_errors.ResidencyWidening, "AccessDenied"),
    (UnknownPolicy, "InvalidLocationConstraint"),
    (PolicyUnsatisfiable, "InvalidLocationConstraint"),
    (Overloaded, "SlowDown"),
    (node_errors.QuorumNotReached, "ServiceUnavailable"),
    (node_errors.PeerUnavailable, "ServiceUnavailable"),
    (node_errors.IntegrityError, "InternalError"),
    (CorruptFrame, "InternalError"),
)


def from_exception(exc: BaseException) -> S3Error | None:
    """The S3 error for one of the node's typed errors, or None for an unexpected exception."""
    if isinstance(exc, S3Error):
        return exc
    for cls, code in TABLE:
        if isinstance(exc, cls):
            return S3Error(code, str(exc) or code)
    return None


def new_request_id() -> str:
    return secrets.token_hex(8).upper()
