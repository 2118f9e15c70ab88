"""Signed layout changes and mesh-wide status: the admin calls of the `Cluster` service.

Layout documents are signed with the cluster secret (`maillage.proto.signing`); nodes refuse
unsigned ones. Staging and applying go to every node in parallel; the endpoint (the first node
that answered) must accept, the others are reported when they do not. Status and repair progress
are asked of every node of the layout, and a node that does not answer is reported, never hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from maillage.placement import Layout, Node, PlacementError, format_layout, parse_layout
from maillage.proto import pb, rpc
from maillage.proto.signing import ClusterKey

from ._connect import AdminError, Channels, fetch_layout, parallel, split_addresses

__all__ = ["ClusterAdmin", "Staged", "NodeAnswers"]

Reply = TypeVar("Reply")
NodeAnswers = dict[str, Any]   # node id -> the reply, or a short text saying why there is none


@dataclass(frozen=True)
class Staged:
    """What the endpoint has staged: the layout, and the version it was prepared against."""

    layout: Layout
    base_version: int


def _rpc_error(address: str, err: grpc.RpcError) -> AdminError:
    code = err.code()
    name = code.name if code is not None else "ERROR"
    details = err.details()
    if name == "UNIMPLEMENTED":
        return AdminError(f"node {address} does not support this call yet (update it): {details}")
    return AdminError(f"node {address}: {details or name} ({name})")


def _parse(text: str, what: str) -> Layout:
    try:
        return parse_layout(text)
    except PlacementError as exc:
        raise AdminError(f"{what} does not parse: {exc}") from None


class ClusterAdmin:
    """Admin calls through one endpoint node (and, for staging, apply and status, every node).

    `key` gives the cluster secret when a call needs to sign (read lazily: looking at a layout or
    the status needs no secret). Use as a context manager, or call close()."""

    def __init__(self, endpoints: str | Iterable[str], *, key: Callable[[], ClusterKey] | None = None,
                 timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._key_source = key
        self._key: ClusterKey | None = None
        self._channels = Channels()
        try:
            self.layout, self.address = fetch_layout(split_addresses(endpoints), timeout=timeout,
                                                     channels=self._channels)
        except AdminError:
            self._channels.close()
            raise

    def __enter__(self) -> ClusterAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channels.close()

    # ----- plumbing --------------------------------------------------------------------------

    def _call(self, address: str, method: str, request: Any, service: str = "Cluster",
              timeout: float | None = None) -> Any:
        stub = getattr(rpc, f"{service}Stub")(self._channels.get(address))
        try:
            return getattr(stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise _rpc_error(address, err) from None

    @property
    def key(self) -> ClusterKey:
        if self._key is None:
            if self._key_source is None:
                raise AdminError("this call signs a layout: give the cluster secret")
            self._key = self._key_source()
        return self._key

    def _doc(self, version: int, text: str) -> pb.LayoutDoc:
        return pb.LayoutDoc(version=version, text=text, signature=self.key.sign(version, text))

    def _everywhere(self, addresses: Iterable[str], send: Callable[[str], Any]) -> dict[str, Any]:
        """send(address) on every address in parallel: {address: reply or AdminError}."""
        def one(address: str) -> Any:
            try:
                return send(address)
            except AdminError as exc:
                return exc

        unique = list(dict.fromkeys(addresses))
        return dict(zip(unique, parallel(one, unique)))

    def _all_addresses(self, *layouts: Layout) -> list[str]:
        first = [self.address]
        return first + [n.address for layout in layouts for n in layout.nodes if n.address != self.address]

    # ----- layouts ---------------------------------------------------------------------------

    def staged(self) -> Staged | None:
        doc = self._call(self.address, "GetStagedLayout", pb.GetLayoutRequest())
        if not doc.text:
            return None
        return Staged(_parse(doc.text, f"the staged layout of {self.address}"), doc.version)

    def stage(self, layout: Layout) -> list[str]:
        """Stage ``layout`` (prepared against the current version) on every node; the endpoint
        must accept. Returns the nodes that did not (they keep their previous staged change)."""
        return self._stage_doc(self._doc(self.layout.version, format_layout(layout)))

    def clear_staged(self) -> list[str]:
        return self._stage_doc(self._doc(self.layout.version, ""))

    def _stage_doc(self, doc: pb.LayoutDoc) -> list[str]:
        replies = self._everywhere(self._all_addresses(self.layout),
                                   lambda a: self._call(a, "StageLayout", doc))
        if isinstance(replies[self.address], AdminError):
            raise replies[self.address]
        return [f"{a}: {r}" for a, r in replies.items() if isinstance(r, AdminError)]

    def push(self, layout: Layout) -> tuple[int, list[str]]:
        """Apply ``layout`` (its version must be current + 1): the endpoint first, then every
        node of the old and new layouts (harmless: highest version wins). Returns (nodes that
        adopted it, problems)."""
        doc = self._doc(layout.version, format_layout(layout))
        first = self._call(self.address, "PushLayout", doc)
        if not first.accepted and first.current_version != layout.version:
            raise AdminError(f"node {self.address} refused layout v{layout.version}: it already has "
                             f"v{first.current_version} (someone applied a change meanwhile: "
                             "look at `maillage layout show` and stage again)")
        others = [a for a in self._all_addresses(self.layout, layout) if a != self.address]
        replies = self._everywhere(others, lambda a: self._call(a, "PushLayout", doc))
        adopted = 1 + sum(1 for r in replies.values() if not isinstance(r, AdminError))
        return adopted, [str(r) for r in replies.values() if isinstance(r, AdminError)]

    def buckets(self) -> list[tuple[str, str]]:
        """(bucket, policy) of every bucket of the mesh."""
        reply = self._call(self.address, "ListBuckets", pb.ListBucketsRequest(), service="Objects")
        return [(b.name, b.policy) for b in reply.buckets]

    # ----- every node ------------------------------------------------------------------------

    def ask_all(self, method: str, request: Callable[[], Any], *, timeout: float = 5.0) -> NodeAnswers:
        """One `Cluster` method on every node of the layout: node id -> reply, or why none."""
        def ask(node: Node) -> Any:
            try:
                return self._call(node.address, method, request(), timeout=timeout)
            except AdminError as exc:
                return f"unreachable ({exc})"

        nodes: Sequence[Node] = self.layout.nodes
        return dict(zip((n.id for n in nodes), parallel(ask, list(nodes))))

    def statuses(self) -> NodeAnswers:
        """Every node's `NodeStatus` (or why it did not answer)."""
        return self.ask_all("GetStatus", pb.GetStatusRequest)

    def repair(self, *, start_now: bool = False) -> NodeAnswers:
        """Every node's `RepairProgress`; with `start_now`, each starts a round first."""
        return self.ask_all("Repair", lambda: pb.RepairRequest(start_round_now=start_now))
