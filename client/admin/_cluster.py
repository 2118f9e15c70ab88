"""Signed layout changes and mesh-wide status: the admin calls of the `Cluster` service.

Layout and access documents are signed with the cluster's Ed25519 layout-signing key
(`maillage.proto.trust.signing`: kind "layout" for an applied layout, "staged-layout" for a staged
change, "clear-staged-layout" to discard it, "access"); nodes refuse unsigned ones, and this API uses
a layout or access document it reads only when the signature verifies. Every call carries the
profile's (admin) access key. Staging and applying go to every node in parallel; the endpoint (the first node
that answered) must accept, the others are reported when they do not. Status and repair progress
are asked of every node of the layout, and a node that does not answer is reported, never hidden.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc

from maillage.client._exceptions import MaillageError, PermissionDenied
from maillage.client._profile import Profile
from maillage.client.admin._bootstrap import (
    ACCESS_FILE,
    pin_layout,
    read_access_file,
    signed_node_access,
    write_access_file,
)
from maillage.client.admin._connect import AdminError, Channels, fetch_layout, parallel
from maillage.placement import Layout, Node, format_layout
from maillage.proto import pb
from maillage.proto.trust.access import AccessDoc, AccessError, for_policies
from maillage.proto.trust.node_access import NodeAccess, parse_node_access
from maillage.proto.trust.signing import DocKind, LayoutAuthError, LayoutSigner

__all__ = ["ClusterAdmin", "Staged", "NodeAnswers"]

Reply = TypeVar("Reply")
NodeAnswers = dict[str, Any]   # node id -> the reply, or a short text saying why there is none


@dataclass(frozen=True)
class Staged:
    """What the endpoint has staged: the layout, and the version it was prepared against."""

    layout: Layout
    base_version: int


def _rpc_error(address: str, err: grpc.RpcError) -> MaillageError:
    code = err.code()
    name = code.name if code is not None else "ERROR"
    details = err.details()
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return PermissionDenied(f"node {address}: {details or name}")
    if name == "UNIMPLEMENTED":
        return AdminError(f"node {address} does not support this call yet (update it): {details}")
    return AdminError(f"node {address}: {details or name} ({name})")


class ClusterAdmin:
    """Admin calls through one endpoint node (and, for staging, apply, access and status, every node).

    `profile` gives the endpoints, the trust dir and an admin access key; `signer` (the cluster's
    layout-signing private key) is needed only by the calls that change the layout or the access
    document; `node_keys` (the cluster dir's recorded certificate keys, `read_node_keys`) are
    pinned in every layout this API stages or applies (`pinned`); `cluster_dir` (the admin's, with
    the master access document) is needed by the calls that change tenants and keys, which edit the
    master there and publish the nodes' version of it. Use as a context manager, or call close()."""

    def __init__(self, profile: Profile, *, signer: LayoutSigner | None = None,
                 node_keys: Mapping[str, str] | None = None, cluster_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.cluster_dir = Path(cluster_dir) if cluster_dir is not None else None
        self.profile = profile
        self._signer = signer
        self.node_keys = dict(node_keys or {})
        self._channels = Channels(profile)
        try:
            self.layout, self.address = fetch_layout(profile, timeout=timeout, channels=self._channels)
        except MaillageError:
            self._channels.close()
            raise

    def __enter__(self) -> ClusterAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channels.close()

    # ----- plumbing --------------------------------------------------------------------------

    def _peer(self, address: str, *layouts: Layout) -> str | None:
        """The node id the layouts give `address` (its certificate must name it), None if unknown."""
        for layout in (*layouts, self.layout):
            for n in layout.nodes:
                if n.address == address:
                    return n.id
        return None

    def _call(self, address: str, method: str, request: Any, service: str = "Cluster",
              timeout: float | None = None, peer: str | None = None) -> Any:
        try:
            return self._channels.call(service, method, request, address=address,
                                       peer=peer if peer is not None else self._peer(address),
                                       timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise _rpc_error(address, err) from None

    @property
    def signer(self) -> LayoutSigner:
        if self._signer is None:
            raise AdminError("this call signs a document: give the cluster's layout-signing key "
                             "(the cluster dir made by `maillage cluster init`)")
        return self._signer

    def _doc(self, version: int, text: str, kind: DocKind) -> pb.LayoutDoc:
        return pb.LayoutDoc(version=version, text=text, signature=self.signer.sign(version, text, kind=kind))

    def _everywhere(self, addresses: Iterable[str], send: Callable[[str], Any]) -> dict[str, Any]:
        """send(address) on every address in parallel: {address: reply or the error (MaillageError)}."""
        def one(address: str) -> Any:
            try:
                return send(address)
            except MaillageError as exc:
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
        try:
            layout = self._channels.trust.verified_layout(doc.version, doc.text, doc.signature, self.address,
                                                          staged=True)
        except PermissionDenied as exc:
            raise AdminError(f"the staged layout of {self.address}: {exc}") from None
        return Staged(layout, doc.version)

    def pinned(self, layout: Layout) -> tuple[Layout, list[str]]:
        """``layout`` pinning the recorded certificate keys of its nodes (`pin_layout`), and why it
        pins none if it cannot pin them all."""
        return pin_layout(layout, self.node_keys)

    def stage(self, layout: Layout) -> list[str]:
        """Stage ``layout`` (prepared against the current version; `pinned` first) on every node; the
        endpoint must accept. Returns the nodes that did not (they keep their previous staged change)."""
        layout, _ = self.pinned(layout)
        return self._stage_doc(self._doc(self.layout.version, format_layout(layout), "staged-layout"))

    def clear_staged(self) -> list[str]:
        return self._stage_doc(self._doc(self.layout.version, "", "clear-staged-layout"))

    def _stage_doc(self, doc: pb.LayoutDoc) -> list[str]:
        replies = self._everywhere(self._all_addresses(self.layout),
                                   lambda a: self._call(a, "StageLayout", doc))
        if isinstance(replies[self.address], MaillageError):
            raise replies[self.address]
        return [f"{a}: {r}" for a, r in replies.items() if isinstance(r, MaillageError)]

    def push(self, layout: Layout) -> tuple[int, list[str]]:
        """Apply ``layout`` (its version must be current + 1; `pinned` first): the endpoint first,
        then every node of the old and new layouts (harmless: highest version wins). Returns (nodes
        that adopted it, problems). A layout pinning a node's new certificate key retires the old
        certificate: restart that node with the new one right after."""
        layout, _ = self.pinned(layout)
        doc = self._doc(layout.version, format_layout(layout), "layout")
        first = self._call(self.address, "PushLayout", doc)
        if not first.accepted and first.current_version != layout.version:
            raise AdminError(f"node {self.address} refused layout v{layout.version}: it already has "
                             f"v{first.current_version} (someone applied a change meanwhile: "
                             "look at `maillage layout show` and stage again)")
        others = [a for a in self._all_addresses(self.layout, layout) if a != self.address]
        replies = self._everywhere(others, lambda a: self._call(a, "PushLayout", doc, peer=self._peer(a, layout)))
        adopted = 1 + sum(1 for r in replies.values() if not isinstance(r, MaillageError))
        problems = [str(r) for r in replies.values() if isinstance(r, MaillageError)]
        if self.cluster_dir is not None and self.master_file.is_file():
            master = self.master()
            if master.policies != tuple(sorted(p.name for p in layout.policies)):
                # the nodes' document carries naming keys and S3 regions per policy: publish for the new set
                _, missing = self.push_access(replace(master, version=master.version + 1), layout=layout)
                problems += [f"access document: {p}" for p in missing]
        return adopted, problems

    def buckets(self) -> list[tuple[str, str]]:
        """(bucket, policy) of every bucket of the mesh (every tenant's: an admin key lists all)."""
        reply = self._call(self.address, "ListBuckets", pb.ListBucketsRequest(), service="Objects")
        return [(b.name, b.policy) for b in reply.buckets]

    def bucket_owners(self) -> list[tuple[str, str, str]]:
        """(bucket, policy, owner tenant) of every bucket of the mesh: names only, never a key name."""
        reply = self._call(self.address, "ListBuckets", pb.ListBucketsRequest(), service="Objects")
        return [(b.name, b.policy, b.owner) for b in reply.buckets]

    def buckets_of(self, tenant: str) -> list[str]:
        """The buckets owned by `tenant`."""
        reply = self._call(self.address, "ListBuckets", pb.ListBucketsRequest(), service="Objects")
        return sorted(b.name for b in reply.buckets if b.owner == tenant)

    # ----- tenants and access keys -----------------------------------------------------------

    def access(self) -> NodeAccess:
        """The access document the mesh holds (tenants and keys without secrets, derived keys for
        its window), read from the endpoint and used only if the cluster admin's signature verifies."""
        doc = self._call(self.address, "GetAccess", pb.GetAccessRequest())
        try:
            self._channels.trust.verifier.verify(doc.version, doc.text, doc.signature, kind="access")
        except LayoutAuthError as exc:
            raise PermissionDenied(f"refused the access document from {self.address}: {exc}") from None
        try:
            parsed = parse_node_access(doc.text)
        except AccessError as exc:
            raise AdminError(f"the access document of {self.address} does not parse: {exc}") from None
        if parsed.version != doc.version:
            raise AdminError(f"the access document of {self.address} is signed as version {doc.version} "
                             f"but says version {parsed.version}")
        return parsed

    @property
    def master_file(self) -> Path:
        if self.cluster_dir is None:
            raise AdminError("this call reads or changes the master access document: give the cluster dir "
                             "made by `maillage cluster init` (it holds access.signed, with every secret)")
        return self.cluster_dir / ACCESS_FILE

    def master(self) -> AccessDoc:
        """The master access document (every key's secret, the naming secret), read from the
        admin's cluster dir: never from a node, which holds none of it."""
        try:
            return read_access_file(self.master_file, self.signer)
        except OSError as exc:
            raise AdminError(f"{self.master_file}: {exc.strerror or exc}") from None
        except (AccessError, LayoutAuthError) as exc:
            raise AdminError(f"{self.master_file}: {exc}") from None

    def push_access(self, doc: AccessDoc, *, layout: Layout | None = None) -> tuple[int, list[str]]:
        """Publish the master ``doc`` (its version must be above the mesh's): record the layout's
        policy names in it and save it in the cluster dir, derive the nodes' document (derived keys
        for a fresh window of dates, naming keys per tenant and policy, no secret: `node_access`),
        sign it and push it to the endpoint, then to every node of the layout in parallel (nodes
        also spread it by gossip; highest version wins). Returns (nodes that adopted it, problems)."""
        layout = layout if layout is not None else self.layout
        doc = for_policies(doc, (p.name for p in layout.policies))
        if self.cluster_dir is not None:
            write_access_file(self.master_file, doc, self.signer)
        version, text, signature = signed_node_access(doc, self.signer)
        message = pb.AccessDoc(version=version, text=text, signature=signature)
        first = self._call(self.address, "PushAccess", message)
        if not first.accepted and first.current_version != doc.version:
            raise AdminError(f"node {self.address} refused access document v{doc.version}: it already has "
                             f"v{first.current_version} (someone changed tenants or keys meanwhile, or the "
                             "master document in the cluster dir is older than the mesh's: try again)")
        others = [a for a in self._all_addresses(self.layout, layout) if a != self.address]
        replies = self._everywhere(others, lambda a: self._call(a, "PushAccess", message, peer=self._peer(a, layout)))
        adopted = 1 + sum(1 for r in replies.values() if not isinstance(r, MaillageError))
        return adopted, [str(r) for r in replies.values() if isinstance(r, MaillageError)]

    def edit_access(self, edit: Callable[[AccessDoc], AccessDoc]) -> tuple[AccessDoc, int, list[str]]:
        """Read the master access document from the cluster dir, apply a pure edit
        (`maillage.proto.trust.access`), save it and publish it (`push_access`): (new master, nodes
        that adopted it, problems)."""
        new = edit(self.master())
        adopted, problems = self.push_access(new)
        return new, adopted, problems

    def refresh_access(self) -> tuple[AccessDoc, int, list[str]]:
        """Publish the master again as a new version, for a window of dates around today: what
        `maillage key refresh` does, at least weekly (nodes refuse requests dated past the window)."""
        return self.edit_access(lambda doc: replace(doc, version=doc.version + 1))

    # ----- every node ------------------------------------------------------------------------

    def refresh_layout(self) -> Layout:
        """Read the layout again (from the first endpoint that answers with a signed one): for a
        long-lived admin (the console) that must follow layout changes."""
        self.layout, self.address = fetch_layout(self.profile, timeout=self.timeout, channels=self._channels)
        return self.layout

    def ask_all(self, method: str, request: Callable[[], Any], *, timeout: float = 5.0) -> NodeAnswers:
        """One `Cluster` method on every node of the layout: node id -> reply, or why none."""
        def ask(node: Node) -> Any:
            try:
                return self._call(node.address, method, request(), timeout=timeout, peer=node.id)
            except AdminError as exc:
                return f"unreachable ({exc})"

        nodes: Sequence[Node] = self.layout.nodes
        return dict(zip((n.id for n in nodes), parallel(ask, list(nodes))))

    def statuses(self, *, timeout: float = 5.0) -> NodeAnswers:
        """Every node's `NodeStatus` (or why it did not answer within `timeout` seconds)."""
        return self.ask_all("GetStatus", pb.GetStatusRequest, timeout=timeout)

    def repair(self, *, start_now: bool = False) -> NodeAnswers:
        """Every node's `RepairProgress`; with `start_now`, each starts a round first."""
        return self.ask_all("Repair", lambda: pb.RepairRequest(start_round_now=start_now))
