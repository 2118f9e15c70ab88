"""What a client holds to talk to a mesh safely: TLS identity, layout verifier and access key.

Built once from a `Profile` (`Trust.of`): the shared client certificate and the cluster CA from the
profile's trust dir (every node port is mutual TLS), the layout-signing public key (a layout or an
access document is used only when the cluster admin's signature verifies), and the access key that
signs every call (`maillage.proto.trust.requestauth`, SigV4 over the gRPC method path). The SDK and the
admin API both use it, so there is one way to authenticate a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maillage.client._exceptions import CredentialsError, PermissionDenied
from maillage.client._profile import Credentials, Profile
from maillage.placement import Layout, PlacementError, parse_layout
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import IdentityError, TlsIdentity
from maillage.proto.trust.signing import LayoutAuthError, LayoutVerifier

__all__ = ["PACKAGE", "Metadata", "Trust", "method_path"]

PACKAGE = "maillage.v1"
SIGNING_PUB = "layout-signing.pub"

Metadata = tuple[tuple[str, str], ...]


def method_path(service: str, method: str) -> str:
    """The full gRPC path a request signature covers, e.g. "/maillage.v1.Objects/HeadObject"."""
    return f"/{PACKAGE}.{service}/{method}"


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

    def sign(self, path: str) -> Metadata:
        """Metadata authenticating one call of the gRPC method `path`."""
        return requestauth.sign(path, self.credentials.key_id, self.credentials.secret)

    def metadata(self, service: str, method: str) -> Metadata:
        return self.sign(method_path(service, method))

    def verified_layout(self, version: int, text: str, signature: bytes, where: str) -> Layout:
        """The layout of a LayoutDoc, only if the cluster admin signed it; `PermissionDenied` otherwise."""
        try:
            self.verifier.verify(version, text, signature, kind="layout")
        except LayoutAuthError as exc:
            raise PermissionDenied(f"refused the layout from {where}: {exc} (a node of another cluster, or "
                                   "someone between this client and the mesh?)") from None
        try:
            layout = parse_layout(text)
        except PlacementError as exc:
            raise PermissionDenied(f"refused the layout from {where}: it does not parse ({exc})") from None
        if layout.version != version:
            raise PermissionDenied(f"refused the layout from {where}: signed as version {version}, "
                                   f"but its text says version {layout.version}")
        return layout
