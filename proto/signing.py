"""Layout signatures: only holders of the cluster secret can change where data lives.

A layout decides which disks may hold a hospital's France-only data, so a stray process that can
reach a node's port must not be able to push one. Every layout document (applied or staged) carries
a keyed BLAKE3 over its version and text; nodes verify it before adopting or storing anything, and
the admin API signs what it sends. The secret is a file shared by the nodes and the administrators
(`new_secret_file` writes one); a node started without it keeps the layout it was given and refuses
changes. The scheme is part of the wire contract, so it lives here, next to the messages it signs.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import blake3

__all__ = ["ClusterKey", "LayoutAuthError", "new_secret_file", "SECRET_ENV"]


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
