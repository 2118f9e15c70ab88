"""Every error the node's code can raise, classified once as a `Reason`.

Both front doors render failures from this one classification: the gRPC boundary
(`maillage.node.rpc.boundary`) sends the reason's status code with the reason in trailing metadata,
the S3 door (`maillage.node.s3.errors`) answers the S3 error code it maps the reason to. A new error
class therefore needs one line here, and `tests/proto/test_reasons.py` fails until it has it (and
until every reason has a gRPC status, an S3 code and an SDK exception).
"""

from __future__ import annotations

from maillage import placement, storage
from maillage.node import errors, object_lock
from maillage.node.data import multipart, versions
from maillage.node.runtime import budget
from maillage.node.trust import documents
from maillage.proto import bulk, frame
from maillage.proto.reasons import Reason
from maillage.proto.trust.access import AccessError

__all__ = ["DOMAIN_ERRORS", "REASONS", "reason_for"]

# Most specific first: the first match wins.
REASONS: list[tuple[type[Exception], Reason]] = [
    (multipart.NoSuchUpload, Reason.NO_SUCH_UPLOAD),
    (versions.NoSuchVersion, Reason.NO_SUCH_VERSION),
    (multipart.InvalidPart, Reason.INVALID_PART),
    (multipart.InvalidPartOrder, Reason.INVALID_PART_ORDER),
    (multipart.EntityTooSmall, Reason.ENTITY_TOO_SMALL),
    (multipart.EntityTooLarge, Reason.ENTITY_TOO_LARGE),
    (errors.InvalidBucketName, Reason.INVALID_BUCKET_NAME),
    (errors.InvalidKey, Reason.INVALID_KEY),
    (errors.MetadataTooLarge, Reason.METADATA_TOO_LARGE),
    (errors.InvalidArgument, Reason.INVALID_REQUEST),
    (AccessError, Reason.INVALID_REQUEST),  # a malformed access document
    (bulk.StreamError, Reason.INVALID_REQUEST),
    (errors.NoSuchBucket, Reason.NO_SUCH_BUCKET),
    (errors.NoSuchKey, Reason.NO_SUCH_KEY),
    (errors.BucketAlreadyExists, Reason.BUCKET_ALREADY_EXISTS),
    (errors.BucketNotEmpty, Reason.BUCKET_NOT_EMPTY),
    (errors.OutsidePolicy, Reason.OUTSIDE_POLICY),
    (errors.OutsideTerritory, Reason.OUTSIDE_TERRITORY),
    (errors.BucketDisputed, Reason.BUCKET_DISPUTED),
    (errors.ResidencyWidening, Reason.OUTSIDE_POLICY),
    (errors.QuorumNotReached, Reason.QUORUM_NOT_REACHED),
    (errors.PeerUnavailable, Reason.PEER_UNAVAILABLE),
    (budget.Overloaded, Reason.OVERLOADED),
    (errors.IntegrityError, Reason.INTEGRITY),
    (object_lock.ObjectLocked, Reason.OBJECT_LOCKED),  # before AccessDenied, its base
    (errors.AccessDenied, Reason.PERMISSION_DENIED),  # first: a peer's refusal comes back as one
    (documents.LayoutAuthError, Reason.PERMISSION_DENIED),
    (placement.PolicyUnsatisfiable, Reason.POLICY_UNSATISFIABLE),
    (placement.UnknownPolicy, Reason.UNKNOWN_POLICY),
    (placement.UnknownNode, Reason.UNKNOWN_NODE),
    (placement.PlacementError, Reason.INVALID_LAYOUT),
    (storage.ChunkNotFound, Reason.NO_SUCH_CHUNK),
    (frame.FrameTooLarge, Reason.ENTITY_TOO_LARGE),  # declares more than any chunk (INVALID_ARGUMENT)
    (frame.CorruptFrame, Reason.INTEGRITY),
    (storage.DiskFull, Reason.STORAGE_FULL),
    (storage.StorageUnavailable, Reason.STORAGE_UNAVAILABLE),
    (storage.DataFormatError, Reason.STORAGE_UNAVAILABLE),  # raised at start only: a newer data directory
    (storage.InvalidName, Reason.INVALID_REQUEST),
    (storage.errors.VersionTooFarAhead, Reason.INVALID_REQUEST),
    (errors.NodeError, Reason.INTERNAL),
    (storage.StorageError, Reason.INTERNAL),
]

#: The roots of every hierarchy above: what a handler may raise on purpose.
DOMAIN_ERRORS = (errors.NodeError, placement.PlacementError, storage.StorageError, frame.CorruptFrame,
                 bulk.StreamError, documents.LayoutAuthError, AccessError)


def reason_for(exc: BaseException) -> Reason:
    """The reason `exc` is reported with; INTERNAL for anything that is not a domain error (a bug)."""
    for cls, reason in REASONS:
        if isinstance(exc, cls):
            return reason
    return Reason.INTERNAL
