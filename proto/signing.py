"""Layout signatures: only holders of the cluster secret can change where data lives.

A layout decides which disks may hold a hospital's France-only data, so a stray process that can
reach a node's port must not be able to push one. Every layout document (applied or staged) carries
a keyed BLAKE3 over its version and text; nodes verify it before adopting or storing anything, and
the admin API signs what it sends. The secret is a file shared by the nodes and the administrators
(`new_secret_file` writes one); a node started without it keeps the layout it was given and refuses
changes. The scheme is part of the wire contract, so it lives here, next to the messages it signs.

`LayoutSigner` / `LayoutVerifier` (Ed25519) replace `ClusterKey` (a shared secret every node held, so
any node could sign a layout): only the admin holds the private key, nodes and the SDK verify with the
public key. The same key signs the access document; each kind of document has its own signature
domain, so a signature made for one can never pass for the other. `ClusterKey` stays until every
caller has moved over.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Literal

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["ClusterKey", "DocKind", "LayoutAuthError", "LayoutSigner", "LayoutVerifier", "new_secret_file",
           "SECRET_ENV", "SIGNATURE_SIZE"]


SECRET_ENV = "MAILLAGE_SECRET_FILE"
_CONTEXT = "maillage 2026-11 layout signature v1"


class LayoutAuthError(Exception):
    """A layout document whose signature is missing or does not match the cluster secret."""


class ClusterKey:
    """The derived signing key; the raw secret never leaves this object."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("cluster secret: must be at least 16 bytes")
        self._key = blake3.blake3(secret, derive_key_context=_CONTEXT).digest()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ClusterKey:
        try:
            data = Path(path).read_bytes().strip()
        except OSError as err:
            raise ValueError(f"cluster secret file {path}: {err.strerror}") from None
        return cls(data)

    def sign(self, version: int, text: str) -> bytes:
        message = version.to_bytes(8, "big") + text.encode("utf-8")
        return blake3.blake3(message, key=self._key).digest()

    def verify(self, version: int, text: str, signature: bytes) -> None:
        if not signature:
            raise LayoutAuthError("layout document is not signed (give the cluster secret file)")
        if not hmac.compare_digest(self.sign(version, text), signature):
            raise LayoutAuthError("layout signature does not match this cluster's secret")


def new_secret_file(path: str | os.PathLike[str]) -> Path:
    """Write a fresh random secret readable by its owner only (for a new cluster)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------
# Ed25519: the admin signs, nodes and the SDK verify


DocKind = Literal["layout", "access"]
SIGNATURE_SIZE = 64
_DOMAIN = b"maillage signed document v1\x00"


def _message(kind: DocKind, version: int, text: str) -> bytes:
    """What is signed: a domain prefix naming the document kind, then the same (version, text) as
    `ClusterKey` (8-byte big-endian version, UTF-8 text)."""
    if kind not in ("layout", "access"):
        raise ValueError(f"document kind {kind!r}: must be 'layout' or 'access'")
    if not 0 <= version < 1 << 64:
        raise ValueError(f"document version {version}: must fit in 64 bits")
    return _DOMAIN + kind.encode("ascii") + b"\x00" + version.to_bytes(8, "big") + text.encode("utf-8")


class LayoutSigner:
    """The admin's Ed25519 private key (layout-signing.key, PEM PKCS#8); it never goes to a node."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "LayoutSigner(<private key>)"

    @classmethod
    def generate(cls) -> LayoutSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes) -> LayoutSigner:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ValueError("layout-signing key: not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("layout-signing key: not an Ed25519 key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LayoutSigner:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise ValueError(f"layout-signing key {path}: {err.strerror}") from None
        try:
            return cls.from_pem(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def sign(self, version: int, text: str, *, kind: DocKind = "layout") -> bytes:
        return self._key.sign(_message(kind, version, text))

    def private_key_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def verifier(self) -> LayoutVerifier:
        return LayoutVerifier(self._key.public_key())


class LayoutVerifier:
    """The public half (layout-signing.pub, PEM SubjectPublicKeyInfo) held by nodes and SDKs."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    @classmethod
    def from_pem(cls, data: bytes) -> LayoutVerifier:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise ValueError("layout-signing public key: not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("layout-signing public key: not an Ed25519 key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LayoutVerifier:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise ValueError(f"layout-signing public key {path}: {err.strerror}") from None
        try:
            return cls.from_pem(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def public_key_pem(self) -> bytes:
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, version: int, text: str, signature: bytes, *, kind: DocKind = "layout") -> None:
        """Raise `LayoutAuthError` unless `signature` is the admin's over this kind, version and text."""
        if not signature:
            raise LayoutAuthError(f"{kind} document version {version} is not signed "
                                  "(sign it with the cluster's layout-signing key)")
        if len(signature) != SIGNATURE_SIZE:
            raise LayoutAuthError(f"{kind} document version {version}: signature is {len(signature)} bytes, "
                                  f"an Ed25519 signature is {SIGNATURE_SIZE}")
        try:
            self._key.verify(signature, _message(kind, version, text))
        except InvalidSignature:
            raise LayoutAuthError(f"{kind} document version {version}: signature does not verify against "
                                  "this cluster's layout-signing public key") from None
