"""The one boundary where gRPC failures become SDK exceptions.

A node names what went wrong with a `Reason` (`maillage.proto.reasons`); each reason has exactly one
SDK exception here. A failure without a reason (the call never reached a node, or the peer is not a
maillage node) is judged by its status code. `tests/proto/test_reasons.py` checks the table covers
every reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from maillage.client import _exceptions as e
from maillage.proto.reasons import Reason, reason_of

BY_REASON: dict[Reason, type[e.MaillageError]] = {
    Reason.INVALID_REQUEST: e.InvalidRequest,
    Reason.INVALID_BUCKET_NAME: e.InvalidBucketName,
    Reason.INVALID_KEY: e.InvalidKey,
    Reason.METADATA_TOO_LARGE: e.MetadataTooLarge,
    Reason.UNKNOWN_POLICY: e.UnknownPolicy,
    Reason.INVALID_LAYOUT: e.InvalidRequest,
    Reason.UNKNOWN_NODE: e.InvalidRequest,
    Reason.NO_SUCH_BUCKET: e.NoSuchBucket,
    Reason.NO_SUCH_KEY: e.NoSuchKey,
    Reason.NO_SUCH_VERSION: e.NoSuchKey,
    Reason.NO_SUCH_CHUNK: e.NoSuchChunk,
    Reason.BUCKET_ALREADY_EXISTS: e.BucketAlreadyExists,
    Reason.BUCKET_NOT_EMPTY: e.BucketNotEmpty,
    Reason.NO_SUCH_UPLOAD: e.NoSuchKey,          # multipart is S3's: the SDK never sees these
    Reason.INVALID_PART: e.InvalidRequest,
    Reason.INVALID_PART_ORDER: e.InvalidRequest,
    Reason.ENTITY_TOO_SMALL: e.InvalidRequest,
    Reason.ENTITY_TOO_LARGE: e.InvalidRequest,
    Reason.POLICY_UNSATISFIABLE: e.PolicyUnsatisfiable,
    Reason.OUTSIDE_POLICY: e.OutsidePolicy,
    Reason.OUTSIDE_TERRITORY: e.OutsideTerritory,
    Reason.BUCKET_DISPUTED: e.BucketDisputed,
    Reason.PERMISSION_DENIED: e.PermissionDenied,
    Reason.OBJECT_LOCKED: e.PermissionDenied,
    Reason.INTEGRITY: e.IntegrityError,
    Reason.STORAGE_FULL: e.StorageFull,
    Reason.STORAGE_UNAVAILABLE: e.Unavailable,
    Reason.QUORUM_NOT_REACHED: e.QuorumNotReached,
    Reason.PEER_UNAVAILABLE: e.NodeUnavailable,
    Reason.OVERLOADED: e.Overloaded,
    Reason.INTERNAL: e.InternalError,
}
_BY_CODE: dict[grpc.StatusCode, type[e.MaillageError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: e.InvalidRequest,
    grpc.StatusCode.UNAVAILABLE: e.NodeUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: e.NodeUnavailable,
    # Sent by a node that stops (SIGTERM) to a call it had received but not started (grpc/grpc#41785):
    # the SDK's own cancellations raise asyncio.CancelledError, so this one is the node going away.
    grpc.StatusCode.CANCELLED: e.NodeUnavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: e.StorageFull,
    grpc.StatusCode.DATA_LOSS: e.IntegrityError,
    grpc.StatusCode.PERMISSION_DENIED: e.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: e.PermissionDenied,
    # A node's own internal error always carries its reason (INTERNAL, above): one without is the
    # gRPC library's, e.g. a node going away in the middle of the call (grpc/grpc#14109; a rolling
    # restart's PUT met "Internal error from Core"): the node did not say it failed, so another is tried.
    grpc.StatusCode.INTERNAL: e.NodeUnavailable,
}


def exception_for(err: grpc.RpcError, where: str = "") -> e.MaillageError:
    """The SDK exception for a failed call to node `where`."""
    code: grpc.StatusCode = err.code()
    reason = reason_of(err)
    cls = BY_REASON[reason] if reason is not None else _BY_CODE.get(code, e.MaillageError)
    details: str = err.details() or code.name
    if cls is e.NodeUnavailable and where:
        details = f"node {where} did not answer ({code.name}): {details}"
    return cls(details)


@contextlib.contextmanager
def translate(where: str = "") -> Iterator[None]:
    """Run a call to node `where`; a gRPC failure leaves as its SDK exception (the original as
    __cause__)."""
    try:
        yield
    except grpc.RpcError as err:
        raise exception_for(err, where) from err
