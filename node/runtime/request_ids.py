"""One id per request, carried across nodes, so one operation can be followed in every log.

A door (gRPC from the SDK, or S3) starts a request with the id its caller sent, if it is a plain
short token, or a new one; the id lives in a context variable of the request's task, so every log
line of that task (`logs.RequestIdFilter`) and every call it makes to a peer (`outgoing`, in the
metadata) carries it, and the peer's handler adopts it in turn. An id is never a name of anything
stored: it is safe to log anywhere.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

__all__ = ["METADATA_KEY", "REQUEST_ID", "adopt", "current", "new_request_id", "outgoing"]

METADATA_KEY = "x-maillage-request-id"
REQUEST_ID: ContextVar[str] = ContextVar("maillage_request_id", default="")
_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_request_id() -> str:
    return secrets.token_hex(8).upper()


def adopt(given: str | bytes | None) -> str:
    """Make `given` (a caller's id, when it is a plain token of at most 64 characters) or a new id
    the current request's id, and return it. Anything else a caller sends is not echoed into logs."""
    if isinstance(given, bytes):
        given = given.decode("ascii", "replace")
    request_id = given if given and _VALID.fullmatch(given) else new_request_id()
    REQUEST_ID.set(request_id)
    return request_id


def current() -> str:
    return REQUEST_ID.get()


def outgoing() -> tuple[tuple[str, str], ...]:
    """Metadata that hands the current request's id to a peer (nothing outside a request)."""
    request_id = REQUEST_ID.get()
    return ((METADATA_KEY, request_id),) if request_id else ()
