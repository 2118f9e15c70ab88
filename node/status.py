"""The one table between typed errors and gRPC statuses, used in both directions.

Servicers wrap their handlers with `@grpc_errors`: a domain error becomes its status code plus its
class name under `x-maillage-error`, so the caller can raise the same type. `error_from_rpc` does the
reverse for node-to-node calls (a peer's `OutsidePolicy` stays an `OutsidePolicy`), and turns
transport failures into `PeerUnavailable` so the coordinator can route around the peer.
"""

from __future__ import annotations

import functools
import logging

import grpc

from maillage import placement, storage
from maillage.proto import bulk

from . import auth, errors

log = logging.getLogger(__name__)

# Most specific first: the first match wins.
_STATUS: list[tuple[type[Exception], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NoSuchBucket, grpc.StatusCode.NOT_FOUND),
    (errors.NoSuchKey, grpc.StatusCode.NOT_FOUND),
    (errors.BucketAlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.BucketNotEmpty, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.OutsidePolicy, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.QuorumNotReached, grpc.StatusCode.UNAVAILABLE),
    (errors.PeerUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.IntegrityError, grpc.StatusCode.DATA_LOSS),
    (auth.LayoutAuthError, grpc.StatusCode.PERMISSION_DENIED),
    (placement.PolicyUnsatisfiable, grpc.StatusCode.FAILED_PRECONDITION),
    (placement.UnknownPolicy, grpc.StatusCode.INVALID_ARGUMENT),
    (placement.UnknownNode, grpc.StatusCode.FAILED_PRECONDITION),
    (placement.LayoutError, grpc.StatusCode.INVALID_ARGUMENT),
    (storage.ChunkNotFound, grpc.StatusCode.NOT_FOUND),
    (storage.CorruptFrame, grpc.StatusCode.DATA_LOSS),
    (storage.DiskFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (storage.StorageUnavailable, grpc.StatusCode.UNAVAILABLE),
]

_BY_NAME: dict[str, type[Exception]] = {cls.__name__: cls for cls, _ in _STATUS}
for _module in (errors, auth, placement, storage):
    for _name in dir(_module):
        _obj = getattr(_module, _name)
        if isinstance(_obj, type) and issubclass(_obj, Exception):
            _BY_NAME.setdefault(_name, _obj)

_TRANSPORT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}


def status_for(exc: BaseException) -> grpc.StatusCode:
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def grpc_errors(handler):
    """Decorate an async servicer method so typed errors leave as statuses a caller can read."""

    @functools.wraps(handler)
    async def wrapper(self, request, context):
        try:
            return await handler(self, request, context)
        except (errors.NodeError, placement.PlacementError, storage.StorageError) as exc:
            context.set_trailing_metadata(((bulk.ERROR_KEY, type(exc).__name__),))
            await context.abort(status_for(exc), str(exc))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # a bug: say so, with the type, instead of a bare "unknown"
            log.exception("unexpected error in %s", handler.__name__)
            context.set_trailing_metadata(((bulk.ERROR_KEY, "InternalError"),))
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return wrapper


def error_from_rpc(err: grpc.RpcError, peer: str) -> Exception:
    """The typed error a peer raised, or PeerUnavailable when the call itself failed."""
    cls = _BY_NAME.get(bulk.error_reason(err))
    if cls is not None:
        return cls(err.details())
    if err.code() in _TRANSPORT:
        return errors.PeerUnavailable(f"node {peer} did not answer: {err.code().name}: {err.details()}")
    return errors.NodeError(f"node {peer} failed: {err.code().name}: {err.details()}")
