"""The one boundary where gRPC statuses become SDK exceptions."""

from __future__ import annotations

import contextlib

import grpc

from maillage.proto import bulk

from . import _exceptions as e

# The node names the typed error in trailing metadata; these are the names it may send.
_BY_REASON: dict[str, type[e.MaillageError]] = {
    "InvalidArgument": e.InvalidRequest, "InvalidRequest": e.InvalidRequest,
    "InvalidBucketName": e.InvalidBucketName, "InvalidName": e.InvalidRequest,
    "InvalidKey": e.InvalidKey, "MetadataTooLarge": e.MetadataTooLarge,
    "UnknownPolicy": e.UnknownPolicy, "LayoutError": e.InvalidRequest,
    "NoSuchBucket": e.NoSuchBucket, "NoSuchKey": e.NoSuchKey,
    "BucketAlreadyExists": e.BucketAlreadyExists, "BucketNotEmpty": e.BucketNotEmpty,
    "PolicyUnsatisfiable": e.PolicyUnsatisfiable, "OutsidePolicy": e.OutsidePolicy,
    "IntegrityError": e.IntegrityError, "CorruptFrame": e.IntegrityError,
    "DiskFull": e.StorageFull, "QuorumNotReached": e.QuorumNotReached,
    "PeerUnavailable": e.NodeUnavailable, "StorageUnavailable": e.Unavailable,
}
_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: e.InvalidRequest,
    grpc.StatusCode.NOT_FOUND: e.MaillageError,
    grpc.StatusCode.UNAVAILABLE: e.NodeUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: e.NodeUnavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: e.StorageFull,
    grpc.StatusCode.DATA_LOSS: e.IntegrityError,
}


def exception_for(err: grpc.RpcError, where: str = "") -> e.MaillageError:
    cls = _BY_REASON.get(bulk.error_reason(err)) or _BY_CODE.get(err.code(), e.MaillageError)
    details = err.details() or err.code().name
    if cls is e.NodeUnavailable and where:
        details = f"node {where} did not answer ({err.code().name}): {details}"
    return cls(details)


@contextlib.contextmanager
def translate(where: str = ""):
    try:
        yield
    except grpc.RpcError as err:
        raise exception_for(err, where) from err
