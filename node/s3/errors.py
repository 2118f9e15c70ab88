"""S3 errors: standard codes and HTTP statuses; the node's typed errors by the `Reason` the service
layer classifies them as (the same classification the gRPC door answers with)."""

from __future__ import annotations

from maillage.node.object_lock import LockedVersioning, LockNotEnabled
from maillage.node.service.bucket_policy import MalformedPolicy
from maillage.node.service.reasons import DOMAIN_ERRORS, reason_for
from maillage.proto.reasons import Reason

__all__ = ["S3Error", "from_exception"]

# code -> HTTP status
STATUS = {
    "AccessDenied": 403,
    "InvalidAccessKeyId": 403,
    "SignatureDoesNotMatch": 403,
    "RequestTimeTooSkewed": 403,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchVersion": 404,
    "NoSuchTagSet": 404,
    "ObjectLockConfigurationNotFoundError": 404,
    "NoSuchObjectLockConfiguration": 404,
    "InvalidBucketState": 409,
    "InvalidRetentionPeriod": 400,
    "NoSuchLifecycleConfiguration": 404,
    "NoSuchCORSConfiguration": 404,
    "AccessForbidden": 403,           # a CORS preflight no rule allows
    "NoSuchBucketPolicy": 404,
    "MalformedPolicy": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "InvalidBucketName": 400,
    "InvalidArgument": 400,
    "InvalidTag": 400,
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
    "AccessControlListNotSupported": 400,
    "MissingSecurityHeader": 400,
    "KeyTooLongError": 400,
    "MetadataTooLarge": 400,
    "NotImplemented": 501,
    "SlowDown": 503,
    "RequestTimeout": 400,
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


#: The S3 error code of each reason the service layer classifies an error as (`reasons.py`).
CODES: dict[Reason, str] = {
    Reason.INVALID_REQUEST: "InvalidArgument",
    Reason.INVALID_BUCKET_NAME: "InvalidBucketName",
    Reason.INVALID_KEY: "KeyTooLongError",
    Reason.METADATA_TOO_LARGE: "MetadataTooLarge",
    Reason.UNKNOWN_POLICY: "InvalidLocationConstraint",
    Reason.INVALID_LAYOUT: "InvalidArgument",
    Reason.UNKNOWN_NODE: "InvalidArgument",
    Reason.NO_SUCH_BUCKET: "NoSuchBucket",
    Reason.NO_SUCH_KEY: "NoSuchKey",
    Reason.NO_SUCH_VERSION: "NoSuchVersion",
    Reason.NO_SUCH_CHUNK: "InternalError",  # a chunk of a manifest missing everywhere: the node's failure
    Reason.BUCKET_ALREADY_EXISTS: "BucketAlreadyExists",
    Reason.BUCKET_NOT_EMPTY: "BucketNotEmpty",
    Reason.NO_SUCH_UPLOAD: "NoSuchUpload",
    Reason.INVALID_PART: "InvalidPart",
    Reason.INVALID_PART_ORDER: "InvalidPartOrder",
    Reason.ENTITY_TOO_SMALL: "EntityTooSmall",
    Reason.ENTITY_TOO_LARGE: "EntityTooLarge",
    Reason.POLICY_UNSATISFIABLE: "InvalidLocationConstraint",
    Reason.OUTSIDE_POLICY: "AccessDenied",
    Reason.OUTSIDE_TERRITORY: "ServiceUnavailable",  # the door forwards these; this is when it cannot
    Reason.BUCKET_DISPUTED: "ServiceUnavailable",
    Reason.PERMISSION_DENIED: "AccessDenied",
    Reason.OBJECT_LOCKED: "AccessDenied",
    Reason.INTEGRITY: "InternalError",
    Reason.STORAGE_FULL: "ServiceUnavailable",
    Reason.STORAGE_UNAVAILABLE: "ServiceUnavailable",
    Reason.QUORUM_NOT_REACHED: "ServiceUnavailable",
    Reason.PEER_UNAVAILABLE: "ServiceUnavailable",
    Reason.OVERLOADED: "SlowDown",
    Reason.INTERNAL: "InternalError",
}


#: Errors S3 names more precisely than their reason does.
EXACT: dict[type, str] = {LockNotEnabled: "InvalidRequest", LockedVersioning: "InvalidBucketState",
                          MalformedPolicy: "MalformedPolicy"}


def from_exception(exc: BaseException) -> S3Error | None:
    """The S3 error for an S3Error or one of the node's domain errors (by its `Reason`), or None for
    an unexpected exception or a domain error that means a bug (INTERNAL): the caller logs those."""
    if isinstance(exc, S3Error):
        return exc
    if not isinstance(exc, DOMAIN_ERRORS):
        return None
    reason = reason_for(exc)
    if reason is Reason.INTERNAL:
        return None
    code = EXACT.get(type(exc)) or CODES[reason]
    return S3Error(code, str(exc) or code)
