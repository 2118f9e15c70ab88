"""Blocking calls to every node of a layout: one channel per address, parallel fan-out.

Admin work (audit, status, layout changes) runs outside an event loop, often from a command line,
and asks many nodes at once; sync gRPC channels are thread-safe, so a bounded thread pool shares them.
Channels come from the one factory, `maillage.proto.channels`, with the TLS identity and access key
of a `Profile` (an admin key for everything but the object listings).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from maillage.client._exceptions import MaillageError, PermissionDenied
from maillage.client._profile import Profile
from maillage.client._trust import Trust, method_path, unary_method
from maillage.placement import Layout
from maillage.proto import pb
from maillage.proto.channels import open_blocking_channel
from maillage.proto.trust.requestauth import CLUSTER_WIDE

# Calls in flight at once in one fan-out (status, audit, staging). Each call mostly waits on the
# node, so threads are cheap; 64 lets a 100-node mesh answer in two waves of its latency (16 took
# seven, and one slow node then pushed `maillage status` past its budget) while still bounding the
# TLS handshakes the client opens together.
WORKERS = 64
INVENTORY_MESSAGE = 256 * 1024 * 1024      # a node's whole inventory comes in one reply

T = TypeVar("T")
R = TypeVar("R")


class AdminError(MaillageError):
    """An admin call failed: no node answered, a node refused, or its answer made no sense."""


class AuditError(AdminError):
    """The audit could not start: no layout or no bucket list from the endpoint."""


class Channels:
    """One blocking channel per (address, node id), shared by worker threads; close() when done.

    Every channel is mutual TLS with the profile's trust dir, and every call is signed with the
    profile's access key (admin calls need an admin key), for the node it goes to."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.trust = Trust.of(profile)
        self._open: dict[tuple[str, str | None], grpc.Channel] = {}
        self._node_ids: dict[str, str] = {}  # address -> the node id it answered GetInfo with
        self._lock = threading.Lock()

    def get(self, address: str, peer: str | None = None) -> grpc.Channel:
        """The channel to `address`; its certificate must name node `peer` (None: any node of the cluster)."""
        with self._lock:
            channel = self._open.get((address, peer))
            if channel is None:
                channel = self._open[(address, peer)] = open_blocking_channel(
                    address, tls=self.trust.tls, peer=peer, max_receive=INVENTORY_MESSAGE)
            return channel

    def call(self, service: str, method: str, request: Any, *, address: str, peer: str | None,
             timeout: float) -> Any:
        """One call of `service`.`method` signed for node `peer` (None: not known; a method not
        `CLUSTER_WIDE` then first asks the address which node it is); a failure leaves as
        `grpc.RpcError`."""
        if peer is None and method_path(service, method) not in CLUSTER_WIDE:
            peer = self.node_id_of(address, timeout)
        body, metadata = self.trust.signed(service, method, request, peer)
        return unary_method(self.get(address, peer), service, method)(body, timeout=timeout, metadata=metadata)

    def node_id_of(self, address: str, timeout: float) -> str:
        """The node id of the node at `address` (asked once, with a GetInfo signed for any node). A
        node could claim another's id, but calls for that id then go over a channel whose
        certificate must name it: the handshake fails instead."""
        with self._lock:
            known = self._node_ids.get(address)
        if known is None:
            info = self.call("Cluster", "GetInfo", pb.GetInfoRequest(), address=address, peer=None, timeout=timeout)
            known = info.node_id
            if not known:
                raise AdminError(f"the node at {address} did not say which node it is")
            with self._lock:
                self._node_ids[address] = known
        return known

    def close(self) -> None:
        with self._lock:
            for channel in self._open.values():
                channel.close()
            self._open.clear()


@contextmanager
def using_channels(profile: Profile, given: Channels | None = None) -> Iterator[Channels]:
    """The caller's channels, or fresh ones for `profile` closed on exit."""
    if given is not None:
        yield given
        return
    fresh = Channels(profile)
    try:
        yield fresh
    finally:
        fresh.close()


def why(err: grpc.RpcError) -> str:
    """A failed call in a few words: its status and details."""
    return f"{err.code().name}: {err.details()}"


def parallel(fn: Callable[[T], R], items: Sequence[T], workers: int = WORKERS) -> list[R]:
    """fn over items on a bounded thread pool (at most `workers` at once), results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def split_addresses(addresses: str | Iterable[str]) -> list[str]:
    """"a:1,b:2" or ["a:1", "b:2"] -> ["a:1", "b:2"]."""
    if isinstance(addresses, str):
        addresses = addresses.split(",")
    return [a.strip() for a in addresses if a.strip()]


def check_admin_key(profile: Profile, *, timeout: float = 5.0, channels: Channels | None = None) -> None:
    """Whether the mesh takes the profile's access key as an admin key: one admin call (GetStatus) to
    the first endpoint that answers. `PermissionDenied` when a node refuses the key (unknown,
    revoked, wrong secret, not an admin key), `AdminError` when no endpoint answers."""
    wanted = split_addresses(profile.endpoints)
    problems = []
    with using_channels(profile, channels) as chans:
        for address in wanted:
            try:
                chans.call("Cluster", "GetStatus", pb.GetStatusRequest(), address=address, peer=None,
                           timeout=timeout)
                return
            except grpc.RpcError as err:
                if err.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    raise PermissionDenied(f"node {address} refused the key: {err.details()}") from None
                problems.append(f"{address}: {why(err)}")
            except AdminError as exc:      # the node did not say which node it is
                problems.append(str(exc))
    raise AdminError(f"cannot check the key: {'; '.join(problems) or 'no endpoint given'}")


def fetch_layout(profile: Profile, *, timeout: float = 10.0, channels: Channels | None = None,
                 endpoints: Iterable[str] | None = None) -> tuple[Layout, str]:
    """The layout of the first endpoint of `profile` (or of `endpoints`) that answers with one the
    cluster admin signed: (layout, address). A layout whose signature does not verify is never used;
    when no endpoint gave a signed one and one gave a forged one, `PermissionDenied`."""
    wanted = split_addresses(endpoints if endpoints is not None else profile.endpoints)
    if not wanted:
        raise AuditError("no endpoint given")
    problems = []
    refused: PermissionDenied | None = None
    with using_channels(profile, channels) as chans:
        for address in wanted:
            try:
                doc = chans.call("Cluster", "GetLayout", pb.GetLayoutRequest(), address=address, peer=None,
                                 timeout=timeout)
            except grpc.RpcError as err:
                problems.append(f"{address}: {why(err)}")
                continue
            try:
                return chans.trust.verified_layout(doc.version, doc.text, doc.signature, address), address
            except PermissionDenied as exc:
                refused = refused or exc
                problems.append(str(exc))
    if refused is not None:
        raise PermissionDenied(f"cannot read a signed layout: {'; '.join(problems)}")
    raise AuditError(f"cannot read the layout: {'; '.join(problems)}")
