"""The vocabulary of error reasons: what a node says went wrong, in words both sides share.

A failed call carries a gRPC status code (for generic tools) and, in trailing metadata under
`ERROR_KEY`, one `Reason` (for our own SDK and for node-to-node calls). The node maps each of its
domain errors to a reason once (`maillage.node.service.reasons`), for both of its doors; the SDK
maps each reason to one of its exceptions (`maillage.client._errors`); `tests/proto/test_reasons.py`
checks that the tables cover every reason and every domain error, so a new error cannot leave one
side guessing.
"""

from __future__ import annotations

import enum

import grpc

__all__ = ["ERROR_KEY", "Reason", "reason_of", "status_of"]

ERROR_KEY = "x-maillage-error"


class Reason(enum.StrEnum):
    # the request is malformed or names something that cannot exist: nothing was stored
    INVALID_REQUEST = "InvalidRequest"
    INVALID_BUCKET_NAME = "InvalidBucketName"
    INVALID_KEY = "InvalidKey"
    METADATA_TOO_LARGE = "MetadataTooLarge"
    UNKNOWN_POLICY = "UnknownPolicy"
    INVALID_LAYOUT = "InvalidLayout"
    UNKNOWN_NODE = "UnknownNode"
    # the named thing is not (or already) there
    NO_SUCH_BUCKET = "NoSuchBucket"
    NO_SUCH_KEY = "NoSuchKey"
    NO_SUCH_VERSION = "NoSuchVersion"  # a version id the key has not (any more), or of another bucket
    NO_SUCH_CHUNK = "NoSuchChunk"
    BUCKET_ALREADY_EXISTS = "BucketAlreadyExists"
    BUCKET_NOT_EMPTY = "BucketNotEmpty"
    # multipart uploads (the S3 door's; named as S3's error codes)
    NO_SUCH_UPLOAD = "NoSuchUpload"
    INVALID_PART = "InvalidPart"
    INVALID_PART_ORDER = "InvalidPartOrder"
    ENTITY_TOO_SMALL = "EntityTooSmall"
    ENTITY_TOO_LARGE = "EntityTooLarge"
    # residency
    POLICY_UNSATISFIABLE = "PolicyUnsatisfiable"
    OUTSIDE_POLICY = "OutsidePolicy"
    OUTSIDE_TERRITORY = "OutsideTerritory"  # ask a node inside the bucket's policy
    BUCKET_DISPUTED = "BucketDisputed"      # records of one name under two policies: refused
    # trust
    PERMISSION_DENIED = "PermissionDenied"
    OBJECT_LOCKED = "ObjectLocked"  # a legal hold or retention keeps the version: refused for now, by any node
    # integrity and the disks
    INTEGRITY = "IntegrityError"
    STORAGE_FULL = "StorageFull"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    # the mesh could not do it now
    QUORUM_NOT_REACHED = "QuorumNotReached"
    PEER_UNAVAILABLE = "PeerUnavailable"
    OVERLOADED = "Overloaded"  # the node's budget for uploads in flight is spent: retry later
    # a bug on the node: it says so instead of pretending to be something else
    INTERNAL = "Internal"


_STATUS: dict[Reason, grpc.StatusCode] = {
    Reason.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.INVALID_BUCKET_NAME: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.INVALID_KEY: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.METADATA_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNKNOWN_POLICY: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.INVALID_LAYOUT: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNKNOWN_NODE: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.NO_SUCH_BUCKET: grpc.StatusCode.NOT_FOUND,
    Reason.NO_SUCH_KEY: grpc.StatusCode.NOT_FOUND,
    Reason.NO_SUCH_VERSION: grpc.StatusCode.NOT_FOUND,
    Reason.NO_SUCH_CHUNK: grpc.StatusCode.NOT_FOUND,
    Reason.BUCKET_ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Reason.BUCKET_NOT_EMPTY: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.NO_SUCH_UPLOAD: grpc.StatusCode.NOT_FOUND,
    Reason.INVALID_PART: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.INVALID_PART_ORDER: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.ENTITY_TOO_SMALL: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.ENTITY_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.POLICY_UNSATISFIABLE: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.OUTSIDE_POLICY: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.OUTSIDE_TERRITORY: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.BUCKET_DISPUTED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.OBJECT_LOCKED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.INTEGRITY: grpc.StatusCode.DATA_LOSS,
    Reason.STORAGE_FULL: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.STORAGE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.QUORUM_NOT_REACHED: grpc.StatusCode.UNAVAILABLE,
    Reason.PEER_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.INTERNAL: grpc.StatusCode.INTERNAL,
}


def status_of(reason: Reason) -> grpc.StatusCode:
    """The gRPC status code a failure with this reason is sent with."""
    return _STATUS[reason]


def reason_of(err: object) -> Reason | None:
    """The reason a node put in a failed call's trailing metadata; None if it sent none we know
    (a transport failure, an older node, something that is not a maillage node)."""
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == ERROR_KEY:
            text = value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
            try:
                return Reason(text)
            except ValueError:
                return None
    return None
