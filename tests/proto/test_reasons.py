"""The error contract: every domain error of every package has a reason, every reason a gRPC status
code, an S3 error code and an SDK class: the two doors and the SDK cannot disagree or leave a gap."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import grpc
import pytest

import maillage.node
import maillage.placement
import maillage.proto
import maillage.storage
from maillage import placement, storage
from maillage.client import _errors as sdk_errors
from maillage.client import _exceptions as sdk_exceptions
from maillage.node import errors as node_errors
from maillage.node.rpc import boundary as status
from maillage.node.s3 import errors as s3_errors
from maillage.node.service import reasons
from maillage.node.trust import documents as auth
from maillage.proto import bulk, frame
from maillage.proto.reasons import ERROR_KEY, Reason, reason_of, status_of
from maillage.proto.trust.access import AccessError

_BASES = (node_errors.NodeError, placement.PlacementError, storage.StorageError, frame.CorruptFrame,
          bulk.StreamError, auth.LayoutAuthError, AccessError)


def _modules(*packages: ModuleType) -> list[ModuleType]:
    """Every module of these packages (so an error class added anywhere is found)."""
    found = list(packages)
    for package in packages:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith(("_pb2", "_pb2_grpc", ".generate")):
                found.append(importlib.import_module(info.name))
    return found


def _domain_errors(*modules: ModuleType) -> set[type[Exception]]:
    return {obj for m in modules for _, obj in inspect.getmembers(m, inspect.isclass)
            if issubclass(obj, _BASES)}


DOMAIN = sorted(_domain_errors(*_modules(maillage.node, maillage.placement, maillage.storage, maillage.proto)),
                key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_the_walk_finds_the_errors_of_every_layer() -> None:
    names = {c.__qualname__ for c in DOMAIN}
    assert {"NoSuchUpload", "Overloaded", "LayoutAuthError", "DiskFull", "PolicyUnsatisfiable",
            "VersionTooFarAhead", "AccessError", "UnknownNode"} <= names


def test_the_gate_classifies_with_the_service_layers_table() -> None:
    assert status.reason_for is reasons.reason_for and status.DOMAIN_ERRORS is reasons.DOMAIN_ERRORS


@pytest.mark.parametrize("cls", DOMAIN, ids=lambda c: c.__qualname__)
def test_every_domain_error_leaves_with_a_reason_of_its_own(cls: type[Exception]) -> None:
    reason = status.reason_for(cls.__new__(cls))
    bases = set(_BASES) | {node_errors.InvalidArgument}
    # Only the roots of the hierarchies may fall back to INTERNAL (a bug, not a user's error).
    assert reason is not Reason.INTERNAL or cls in bases, f"{cls.__qualname__} has no reason"
    # ... and the S3 door answers it with the code of that reason, never an anonymous 500.
    error = s3_errors.from_exception(cls.__new__(cls))
    if reason is Reason.INTERNAL:
        assert error is None  # logged with its request id, answered InternalError
    else:
        expected = s3_errors.EXACT.get(cls, s3_errors.CODES[reason])  # a few S3 names more precisely
        assert error is not None and error.code == expected and expected in s3_errors.STATUS, cls.__qualname__


def test_every_reason_has_an_s3_code_with_an_http_status() -> None:
    for reason in Reason:
        assert s3_errors.CODES[reason] in s3_errors.STATUS, reason


def test_every_reason_has_a_status_code_and_an_sdk_class() -> None:
    for reason in Reason:
        assert isinstance(status_of(reason), grpc.StatusCode)
        assert issubclass(sdk_errors.BY_REASON[reason], sdk_exceptions.MaillageError)


def test_sdk_names_follow_the_reasons() -> None:
    """Where the SDK has a class named like the reason, the table uses it (no silent aliasing)."""
    for reason in Reason:
        same = getattr(sdk_exceptions, reason.value, None)
        if isinstance(same, type):
            assert sdk_errors.BY_REASON[reason] is same, reason


class _Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, reason: str | None, details: str = "x") -> None:
        self._code, self._reason, self._details = code, reason, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((ERROR_KEY, self._reason),) if self._reason else ()


@pytest.mark.parametrize("reason", list(Reason))
def test_a_reason_survives_the_round_trip_node_to_sdk_and_node_to_node(reason: Reason) -> None:
    failed = _Failed(status_of(reason), reason.value, "what happened")
    assert reason_of(failed) is reason
    assert isinstance(sdk_errors.exception_for(failed), sdk_errors.BY_REASON[reason])
    if reason is not Reason.INTERNAL:
        assert status.reason_for(status.error_from_rpc(failed, "peer")) is reason


def test_an_unknown_reason_or_none_falls_back_to_the_status_code() -> None:
    from maillage.client import NodeUnavailable, PermissionDenied

    assert isinstance(sdk_errors.exception_for(_Failed(grpc.StatusCode.UNAVAILABLE, None), "n1"), NodeUnavailable)
    assert isinstance(sdk_errors.exception_for(_Failed(grpc.StatusCode.PERMISSION_DENIED, "Nonsense")),
                      PermissionDenied)
    assert isinstance(status.error_from_rpc(_Failed(grpc.StatusCode.DEADLINE_EXCEEDED, None), "n1"),
                      node_errors.PeerUnavailable)


def test_internal_without_the_nodes_reason_is_the_transport_and_with_it_the_nodes_own_error() -> None:
    """Our boundary sends every internal error with its reason; an INTERNAL without one is the gRPC
    library's (a node going away mid-call: "Internal error from Core" in a rolling restart), so the
    SDK tries another node and a coordinator counts the peer unavailable."""
    from maillage.client import InternalError, NodeUnavailable

    bare = _Failed(grpc.StatusCode.INTERNAL, None, "Internal error from Core")
    assert isinstance(sdk_errors.exception_for(bare, "paris-1"), NodeUnavailable)
    assert isinstance(status.error_from_rpc(bare, "paris-1"), node_errors.PeerUnavailable)
    said = _Failed(grpc.StatusCode.INTERNAL, Reason.INTERNAL.value, "internal error: KeyError: 'x'")
    assert isinstance(sdk_errors.exception_for(said, "paris-1"), InternalError)
    peer_error = status.error_from_rpc(said, "paris-1")
    assert not isinstance(peer_error, node_errors.PeerUnavailable) and "KeyError" in str(peer_error)


def test_a_call_a_stopping_node_cancelled_is_retried_like_an_unavailable_node() -> None:
    """A node stopping on SIGTERM answers CANCELLED to a call it had received but not started
    (grpc/grpc#41785): the SDK counts that node unavailable, so it tries another (rolling restarts)."""
    from maillage.client import NodeUnavailable

    error = sdk_errors.exception_for(_Failed(grpc.StatusCode.CANCELLED, None, ""), "paris-1")
    assert isinstance(error, NodeUnavailable) and "paris-1" in str(error)
