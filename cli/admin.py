"""Shared pieces of the admin commands: the cluster secret, sizes, and signed layout documents.

An admin command talks to one node (the endpoint) through the `Cluster` service and signs every
document it sends with the cluster secret; nodes refuse unsigned ones. gRPC failures become one-line
`CommandError`s naming the node, so no admin command ends in a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from maillage.node.auth import SECRET_ENV, ClusterKey
from maillage.placement import Layout, LayoutError, PlacementError, format_layout, parse_layout
from maillage.placement.layout_codec import parse_capacity

from .common import CommandError, endpoints

__all__ = ["add_secret_option", "cluster_key", "parse_size", "ClusterAdmin", "Staged"]

_SHORT_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP])\s*\Z", re.IGNORECASE)


def add_secret_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-file", metavar="PATH",
        help=f"the cluster secret the nodes were started with (default: ${SECRET_ENV}); "
             "layout changes are signed with it and nodes refuse unsigned ones")


def cluster_key(args: argparse.Namespace) -> ClusterKey:
    path = getattr(args, "secret_file", None) or os.environ.get(SECRET_ENV)
    if not path:
        raise CommandError(f"no cluster secret: pass --secret-file PATH or set {SECRET_ENV}=PATH "
                           "(the file the nodes were started with)")
    try:
        return ClusterKey.from_file(path)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def parse_size(text: str, what: str = "capacity") -> int:
    """Bytes from ``4TB``, ``500GiB``, ``1.5T`` (a lone K/M/G/T/P is decimal: 4T = 4TB = 4e12 bytes)."""
    m = _SHORT_UNIT.match(text)
    if m:
        text = f"{m.group(1)}{m.group(2).upper()}B"
    try:
        return parse_capacity(text, what)
    except LayoutError as exc:
        raise CommandError(f"bad size: {exc}") from None


@dataclass(frozen=True)
class Staged:
    """What the endpoint has staged: the layout, and the version it was prepared against."""

    layout: Layout
    base_version: int


def _rpc_error(address: str, err) -> CommandError:
    code = err.code()
    name = code.name if code is not None else "ERROR"
    if name == "UNIMPLEMENTED":
        return CommandError(f"node {address} does not support this call yet (update it): {err.details()}")
    return CommandError(f"node {address}: {err.details() or name} ({name})")


class ClusterAdmin:
    """Signed layout calls to the endpoint node (and, for staging and apply, every node)."""

    def __init__(self, args: argparse.Namespace, *, timeout: float = 10.0) -> None:
        self._args = args
        self.timeout = timeout
        self._key: ClusterKey | None = None
        self.address, self.layout = self._first_answering(endpoints(args))

    # ----- plumbing --------------------------------------------------------------------------

    def _call(self, address: str, method: str, request, service: str = "Cluster"):
        import grpc

        from maillage.node.peers import CHANNEL_OPTIONS
        from maillage.proto import rpc

        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = getattr(rpc, f"{service}Stub")(channel)
            try:
                return getattr(stub, method)(request, timeout=self.timeout)
            except grpc.RpcError as err:
                raise _rpc_error(address, err) from None

    def _first_answering(self, addresses: list[str]) -> tuple[str, Layout]:
        from maillage.proto import pb

        problems = []
        for address in addresses:
            try:
                doc = self._call(address, "GetLayout", pb.GetLayoutRequest())
            except CommandError as exc:
                problems.append(str(exc))
                continue
            return address, _parse(doc.text, f"the layout of {address}")
        raise CommandError("no endpoint answered: " + "; ".join(problems))

    @property
    def key(self) -> ClusterKey:
        if self._key is None:
            self._key = cluster_key(self._args)
        return self._key

    def _doc(self, version: int, text: str):
        from maillage.proto import pb

        return pb.LayoutDoc(version=version, text=text, signature=self.key.sign(version, text))

    def _everywhere(self, addresses: Iterable[str], send: Callable[[str], object]) -> dict[str, object]:
        """send(address) on every address in parallel: {address: reply or CommandError}."""
        def one(address: str):
            try:
                return send(address)
            except CommandError as exc:
                return exc

        addresses = list(dict.fromkeys(addresses))
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(addresses)))) as pool:
            return dict(zip(addresses, pool.map(one, addresses)))

    def _all_addresses(self, *layouts: Layout) -> list[str]:
        first = [self.address]
        return first + [n.address for layout in layouts for n in layout.nodes if n.address != self.address]

    # ----- the calls -------------------------------------------------------------------------

    def staged(self) -> Staged | None:
        from maillage.proto import pb

        doc = self._call(self.address, "GetStagedLayout", pb.GetLayoutRequest())
        if not doc.text:
            return None
        return Staged(_parse(doc.text, f"the staged layout of {self.address}"), doc.version)

    def stage(self, layout: Layout) -> list[str]:
        """Stage ``layout`` (prepared against the current version) on every node; the endpoint
        must accept. Returns the nodes that did not (they keep their previous staged change)."""
        text = format_layout(layout)
        doc = self._doc(self.layout.version, text)
        return self._stage_doc(doc)

    def clear_staged(self) -> list[str]:
        return self._stage_doc(self._doc(self.layout.version, ""))

    def _stage_doc(self, doc) -> list[str]:
        replies = self._everywhere(self._all_addresses(self.layout),
                                   lambda a: self._call(a, "StageLayout", doc))
        if isinstance(replies[self.address], CommandError):
            raise replies[self.address]
        return [f"{a}: {r}" for a, r in replies.items() if isinstance(r, CommandError)]

    def push(self, layout: Layout) -> tuple[int, list[str]]:
        """Apply ``layout`` (its version must be current + 1): the endpoint first, then every
        node of the old and new layouts (harmless: highest version wins). Returns (nodes that
        adopted it, problems)."""
        text = format_layout(layout)
        doc = self._doc(layout.version, text)
        first = self._call(self.address, "PushLayout", doc)
        if not first.accepted and first.current_version != layout.version:
            raise CommandError(f"node {self.address} refused layout v{layout.version}: it already has "
                               f"v{first.current_version} (someone applied a change meanwhile: "
                               "look at `maillage layout show` and stage again)")
        others = [a for a in self._all_addresses(self.layout, layout) if a != self.address]
        replies = self._everywhere(others, lambda a: self._call(a, "PushLayout", doc))
        adopted = 1 + sum(1 for r in replies.values() if not isinstance(r, CommandError))
        return adopted, [str(r) for r in replies.values() if isinstance(r, CommandError)]

    def buckets(self) -> list[tuple[str, str]]:
        """(bucket, policy) of every bucket of the mesh."""
        from maillage.proto import pb

        reply = self._call(self.address, "ListBuckets", pb.ListBucketsRequest(), service="Objects")
        return [(b.name, b.policy) for b in reply.buckets]


def _parse(text: str, what: str) -> Layout:
    try:
        return parse_layout(text)
    except PlacementError as exc:
        raise CommandError(f"{what} does not parse: {exc}") from None
