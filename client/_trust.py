"""What a client holds to talk to a mesh safely: TLS identity, layout verifier and access key.

Built once from a `Profile` (`Trust.of`): the shared client certificate and the cluster CA from the
profile's trust dir (every node port is mutual TLS), the layout-signing public key (a layout or an
access document is used only when the cluster admin's signature verifies), and the access key that
signs every call (`maillage.proto.trust.requestauth`, SigV4 over the method, the node and the
request bytes). The SDK and the admin API both use it, so there is one way to authenticate a call.

A signature covers the request's bytes and the node it is meant for, and a node takes it once
(`requestauth`'s docstring says why). So a request is serialized once (`Trust.signed`) and those
bytes are both signed and sent, over a method registered without a request serializer
(`unary_method`): protobuf does not promise that two serializations of one message are the same
bytes (map fields), and the node hashes exactly what arrives. Every call is signed anew, for the
node id of its channel; a channel not matched to a node id yet signs for any node ("*"), which a
node accepts only for `requestauth.CLUSTER_WIDE` reads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from maillage.client._exceptions import CredentialsError, PermissionDenied
from maillage.client._profile import Credentials, Profile
from maillage.placement import Layout, PlacementError, parse_layout
from maillage.proto import pb
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import IdentityError, TlsIdentity
from maillage.proto.trust.signing import LayoutAuthError, LayoutVerifier

__all__ = ["PACKAGE", "Metadata", "Trust", "method_path", "reply_type", "unary_method"]

PACKAGE = "maillage.v1"
SIGNING_PUB = "layout-signing.pub"

Metadata = tuple[tuple[str, str], ...]


def method_path(service: str, method: str) -> str:
    """The full gRPC path a request signature covers, e.g. "/maillage.v1.Objects/HeadObject"."""
    return f"/{PACKAGE}.{service}/{method}"


@functools.cache
def reply_type(service: str, method: str) -> type[Message]:
    """The reply message class of `service`.`method` of the proto (KeyError for an unknown one)."""
    reply: type[Message] = getattr(pb, pb.DESCRIPTOR.services_by_name[service].methods_by_name[method].output_type.name)
    return reply


def unary_method(channel: grpc.Channel | grpc.aio.Channel, service: str, method: str) -> Any:
    """`service`.`method` on `channel`, taking the request as bytes (from `Trust.signed`) and
    answering its parsed reply message."""
    return channel.unary_unary(method_path(service, method), request_serializer=None,
                               response_deserializer=reply_type(service, method).FromString)


@dataclass(frozen=True)
class Trust:
    tls: TlsIdentity
    verifier: LayoutVerifier
    credentials: Credentials

    @classmethod
    def of(cls, profile: Profile) -> Trust:
        """Load the trust dir of `profile`; a missing or wrong file is a `CredentialsError` naming it."""
        trust_dir = Path(profile.trust_dir)
        if not trust_dir.is_dir():
            raise CredentialsError(f"trust dir {trust_dir} does not exist (it must hold ca.pem, client.pem, "
                                   f"client.key and {SIGNING_PUB} of the cluster)")
        try:
            tls = TlsIdentity.load_client(trust_dir)
        except IdentityError as exc:
            raise CredentialsError(f"trust dir {trust_dir}: {exc}") from None
        try:
            verifier = LayoutVerifier.from_file(trust_dir / SIGNING_PUB)
        except ValueError as exc:
            raise CredentialsError(f"trust dir {trust_dir}: {exc}") from None
        return cls(tls, verifier, profile.credentials)

    def sign(self, path: str, *, target: str | None, body: bytes) -> Metadata:
        """Metadata authenticating one call of the gRPC method `path` to node `target` (None: a
        channel not matched to a node id, for `requestauth.CLUSTER_WIDE` methods) whose request
        bytes (a client stream's first message) are exactly `body`."""
        return requestauth.sign(path, self.credentials.key_id, self.credentials.secret,
                                target=requestauth.ANY_NODE if target is None else target, body=body)

    def signed(self, service: str, method: str, request: Message, target: str | None) -> tuple[bytes, Metadata]:
        """`request` serialized once, and the metadata signing those bytes for node `target`: send
        them with `unary_method`."""
        body = request.SerializeToString()
        return body, self.sign(method_path(service, method), target=target, body=body)

    def verified_layout(self, version: int, text: str, signature: bytes, where: str, *,
                        staged: bool = False) -> Layout:
        """The layout of a LayoutDoc, only if the cluster admin signed it as an applied layout (or,
        with `staged`, as a staged change, whose version is the one it was prepared against);
        `PermissionDenied` otherwise."""
        try:
            self.verifier.verify(version, text, signature, kind="staged-layout" if staged else "layout")
        except LayoutAuthError as exc:
            raise PermissionDenied(f"refused the layout from {where}: {exc} (a node of another cluster, or "
                                   "someone between this client and the mesh?)") from None
        try:
            layout = parse_layout(text)
        except PlacementError as exc:
            raise PermissionDenied(f"refused the layout from {where}: it does not parse ({exc})") from None
        if layout.version != version and not staged:
            raise PermissionDenied(f"refused the layout from {where}: signed as version {version}, "
                                   f"but its text says version {layout.version}")
        return layout
