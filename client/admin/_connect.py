"""Blocking calls to every node of a layout: one channel per address, parallel fan-out.

Admin work (audit, status, layout changes) runs outside an event loop, often from a command line,
and asks many nodes at once; sync gRPC channels are thread-safe, so a small thread pool shares them.
Channels come from the one factory, `maillage.proto.channels`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import grpc

from maillage.client._exceptions import MaillageError
from maillage.placement import Layout, PlacementError, parse_layout
from maillage.proto import pb, rpc
from maillage.proto.channels import open_blocking_channel

WORKERS = 16
INVENTORY_MESSAGE = 256 * 1024 * 1024      # a node's whole inventory comes in one reply

T = TypeVar("T")
R = TypeVar("R")


class AdminError(MaillageError):
    """An admin call failed: no node answered, a node refused, or its answer made no sense."""


class AuditError(AdminError):
    """The audit could not start: no layout or no bucket list from the endpoint."""


class Channels:
    """One blocking channel per address, shared by worker threads; close() when done."""

    def __init__(self) -> None:
        self._open: dict[str, grpc.Channel] = {}

    def get(self, address: str) -> grpc.Channel:
        channel = self._open.get(address)
        if channel is None:
            channel = self._open[address] = open_blocking_channel(address, max_receive=INVENTORY_MESSAGE)
        return channel

    def close(self) -> None:
        for channel in self._open.values():
            channel.close()
        self._open.clear()


@contextmanager
def using_channels(given: Channels | None = None) -> Iterator[Channels]:
    """The caller's channels, or fresh ones closed on exit."""
    if given is not None:
        yield given
        return
    fresh = Channels()
    try:
        yield fresh
    finally:
        fresh.close()


def why(err: grpc.RpcError) -> str:
    """A failed call in a few words: its status and details."""
    return f"{err.code().name}: {err.details()}"


def parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """fn over items on a small thread pool, results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items))) as pool:
        return list(pool.map(fn, items))


def split_addresses(addresses: str | Iterable[str]) -> list[str]:
    """"a:1,b:2" or ["a:1", "b:2"] -> ["a:1", "b:2"]."""
    if isinstance(addresses, str):
        addresses = addresses.split(",")
    return [a.strip() for a in addresses if a.strip()]


def fetch_layout(addresses: str | Iterable[str], *, timeout: float = 10.0,
                 channels: Channels | None = None) -> tuple[Layout, str]:
    """The layout of the first address that answers (comma-separated or a list): (layout, address)."""
    wanted = split_addresses(addresses)
    if not wanted:
        raise AuditError("no endpoint given")
    problems = []
    with using_channels(channels) as chans:
        for address in wanted:
            try:
                doc = rpc.ClusterStub(chans.get(address)).GetLayout(pb.GetLayoutRequest(), timeout=timeout)
            except grpc.RpcError as err:
                problems.append(f"{address}: {why(err)}")
                continue
            try:
                return parse_layout(doc.text), address
            except PlacementError as exc:
                problems.append(f"{address}: its layout does not parse: {exc}")
    raise AuditError(f"cannot read the layout: {'; '.join(problems)}")

