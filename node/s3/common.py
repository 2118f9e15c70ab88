"""What every S3 operation gets: the node's services and the authenticated call, and small helpers."""

from __future__ import annotations

import hmac
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

from aiohttp import web

from maillage.node.runtime.budget import UploadBudget
from maillage.node.s3 import xml
from maillage.node.s3.errors import S3Error
from maillage.node.s3.sigv4 import Verified
from maillage.node.service.objects import ObjectService
from maillage.node.service.tenancy import Caller
from maillage.node.trust.layout_state import LayoutState

__all__ = ["NUMBER", "Services", "Call", "Handler", "query_integer", "xml_response", "same"]


@dataclass(frozen=True)
class Services:
    """The node's parts an S3 operation works with: the service layer the gRPC door calls too."""

    service: ObjectService
    layout: LayoutState
    executor: Executor  # for CPU work (decoding chunks, hashing) off the event loop
    default_policy: str = ""  # the policy of a bucket created without LocationConstraint
    upload_expiry: float = 7 * 24 * 3600.0  # seconds an unfinished multipart upload is kept
    # The node's budget of upload bytes held in memory (shared with the gRPC uploads).
    upload_budget: UploadBudget = field(default_factory=UploadBudget)


@dataclass(frozen=True)
class Call:
    """One authenticated S3 request, its address already resolved (path- or virtual-host-style)."""

    request: web.Request
    caller: Caller
    bucket: str
    key: str
    auth: Verified


Handler = Callable[[Services, Call], Awaitable[web.StreamResponse]]


def xml_response(element: ET.Element, status: int = 200) -> web.Response:
    return web.Response(status=status, body=xml.document(element), content_type="application/xml")


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two digests or signatures."""
    return hmac.compare_digest(a.encode(), b.encode())


#: A non-negative integer as S3 query parameters and part numbers write it (at most 9 digits).
NUMBER = re.compile(r"\d{1,9}\Z")


def query_integer(q: Mapping[str, str], name: str, default: int, *, largest: int | None = None) -> int:
    """A non-negative integer query parameter (max-keys, max-parts, part-number-marker...): `default`
    when absent or empty, at most `largest` when given; anything else is InvalidArgument."""
    value = q.get(name)
    if value is None or value == "":
        return default
    if not NUMBER.match(value.strip()):
        raise S3Error("InvalidArgument", f"{name} must be a non-negative integer, got {value[:20]!r}")
    return int(value) if largest is None else min(int(value), largest)
