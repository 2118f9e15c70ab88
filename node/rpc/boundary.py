"""The node's error boundary: typed errors become gRPC statuses with a reason, and back.

Servicers wrap their handlers with `@grpc_errors`: a domain error leaves as the status code and
`Reason` of `maillage.proto.reasons` (the vocabulary the SDK reads too), with its message. A bug
leaves as INTERNAL with the exception's type, and is logged once. `error_from_rpc` does the reverse
for node-to-node calls (a peer's `OutsidePolicy` stays an `OutsidePolicy`), and turns transport
failures into `PeerUnavailable` so the coordinator can route around the peer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from maillage import placement, storage
from maillage.node import errors
from maillage.node.runtime import budget
from maillage.node.trust import documents as auth
from maillage.proto import bulk, frame
from maillage.proto.reasons import ERROR_KEY, Reason, reason_of, status_of
from maillage.proto.trust.access import AccessError

log = logging.getLogger(__name__)

# Every domain error a handler may raise, by the reason it is sent with. Most specific first: the
# first match wins. `tests/proto/test_reasons.py` checks every class of the node's, placement's
# and storage's errors is covered.
REASONS: list[tuple[type[Exception], Reason]] = [
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
    (errors.ResidencyWidening, Reason.OUTSIDE_POLICY),
    (errors.QuorumNotReached, Reason.QUORUM_NOT_REACHED),
    (errors.PeerUnavailable, Reason.PEER_UNAVAILABLE),
    (budget.Overloaded, Reason.OVERLOADED),
    (errors.IntegrityError, Reason.INTEGRITY),
    (auth.LayoutAuthError, Reason.PERMISSION_DENIED),
    (errors.AccessDenied, Reason.PERMISSION_DENIED),
    (placement.PolicyUnsatisfiable, Reason.POLICY_UNSATISFIABLE),
    (placement.UnknownPolicy, Reason.UNKNOWN_POLICY),
    (placement.UnknownNode, Reason.UNKNOWN_NODE),
    (placement.PlacementError, Reason.INVALID_LAYOUT),
    (storage.ChunkNotFound, Reason.NO_SUCH_CHUNK),
    (frame.CorruptFrame, Reason.INTEGRITY),
    (storage.DiskFull, Reason.STORAGE_FULL),
    (storage.StorageUnavailable, Reason.STORAGE_UNAVAILABLE),
    (storage.InvalidName, Reason.INVALID_REQUEST),
    (storage.errors.VersionTooFarAhead, Reason.INVALID_REQUEST),
    (errors.NodeError, Reason.INTERNAL),
    (storage.StorageError, Reason.INTERNAL),
]
DOMAIN_ERRORS = (errors.NodeError, placement.PlacementError, storage.StorageError, frame.CorruptFrame,
                 bulk.StreamError, auth.LayoutAuthError, AccessError)

# The node's own class for each reason a peer may send back (the first listed for that reason).
_FROM_PEER: dict[Reason, type[Exception]] = {}
for _cls, _reason in REASONS:
    _FROM_PEER.setdefault(_reason, _cls)

_TRANSPORT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


def reason_for(exc: BaseException) -> Reason:
    for cls, reason in REASONS:
        if isinstance(exc, cls):
            return reason
    return Reason.INTERNAL


def grpc_errors(handler: H) -> H:
    """Decorate an async servicer method so typed errors leave as statuses a caller can read."""

    @functools.wraps(handler)
    async def wrapper(self: object, request: object, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except DOMAIN_ERRORS as exc:
            reason = reason_for(exc)
            if reason is Reason.INTERNAL:
                log.exception("unexpected error in %s", handler.__name__)
            context.set_trailing_metadata(((ERROR_KEY, reason.value),))
            await context.abort(status_of(reason), str(exc))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # a bug: say so, with the type, instead of a bare "unknown"
            log.exception("unexpected error in %s", handler.__name__)
            context.set_trailing_metadata(((ERROR_KEY, Reason.INTERNAL.value),))
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]


def error_from_rpc(err: grpc.RpcError, peer: str) -> Exception:
    """The typed error a peer raised, or PeerUnavailable when the call itself failed."""
    code: grpc.StatusCode = err.code()
    details = err.details() or code.name
    reason = reason_of(err)
    if reason is not None and reason is not Reason.INTERNAL:
        return _FROM_PEER[reason](details)
    if code in _TRANSPORT:
        return errors.PeerUnavailable(f"node {peer} did not answer: {code.name}: {details}")
    return errors.NodeError(f"node {peer} failed: {code.name}: {details}")


def error_from_peer(exc: BaseException, peer: str) -> Exception:
    """What a caller of `peer` sees when the peer's handler raised `exc`: the same typed error
    `error_from_rpc` rebuilds from the status (for in-process transports, which skip gRPC)."""
    reason = reason_for(exc) if isinstance(exc, DOMAIN_ERRORS) else Reason.INTERNAL
    if reason is not Reason.INTERNAL:
        return _FROM_PEER[reason](str(exc))
    return errors.NodeError(f"node {peer} failed: INTERNAL: {type(exc).__name__}: {exc}")
