"""The node's error boundary: typed errors become gRPC statuses with a reason, and back.

Servicers wrap their handlers with `@grpc_errors`: a domain error leaves as the status code of the
`Reason` the service layer classifies it as (`maillage.node.service.reasons`, shared with the S3
door), the reason itself in trailing metadata (the vocabulary the SDK reads too), and its message. A bug
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

from maillage.node import errors
from maillage.node.service.reasons import DOMAIN_ERRORS, REASONS, reason_for
from maillage.proto.reasons import ERROR_KEY, Reason, reason_of, status_of

__all__ = ["DOMAIN_ERRORS", "error_from_peer", "error_from_rpc", "grpc_errors", "reason_for"]

log = logging.getLogger(__name__)

# The node's own class for each reason a peer may send back (the first listed for that reason).
_FROM_PEER: dict[Reason, type[Exception]] = {}
for _cls, _reason in REASONS:
    _FROM_PEER.setdefault(_reason, _cls)

_TRANSPORT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


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
    # INTERNAL without the peer's reason is the gRPC library's (a peer going away mid-call), not
    # the peer's own report, which always carries one.
    if code in _TRANSPORT or (code is grpc.StatusCode.INTERNAL and reason is None):
        return errors.PeerUnavailable(f"node {peer} did not answer: {code.name}: {details}")
    return errors.NodeError(f"node {peer} failed: {code.name}: {details}")


def error_from_peer(exc: BaseException, peer: str) -> Exception:
    """What a caller of `peer` sees when the peer's handler raised `exc`: the same typed error
    `error_from_rpc` rebuilds from the status (for in-process transports, which skip gRPC)."""
    reason = reason_for(exc) if isinstance(exc, DOMAIN_ERRORS) else Reason.INTERNAL
    if reason is not Reason.INTERNAL:
        return _FROM_PEER[reason](str(exc))
    return errors.NodeError(f"node {peer} failed: INTERNAL: {type(exc).__name__}: {exc}")
