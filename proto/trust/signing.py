"""Signed documents: only the cluster's admin can change where data lives or who may use it.

A layout decides which disks may hold a hospital's France-only data, and the access document who
may read or write it, so a stray process that can reach a node's port must not be able to push
either. Each is signed with the cluster's Ed25519 layout-signing key: only the admin holds the
private key (`LayoutSigner`), nodes and the SDK verify with the public key (`LayoutVerifier`), so no
node can sign a layout. Each kind of document (`DocKind`) has its own signature domain, so a
signature made for one can never pass for another: a staged (never applied) layout cannot be taken
for an applied one, nor an access document for a layout. A signed document travels as (version,
text, signature) and rests in one file: a comment line with the signature, then the exact text it
covers (`write_signed`, `read_signed`), replaced in one atomic step.

Migrating a wave-1 mesh (keyed BLAKE3 of a shared secret file): run `maillage cluster init` on the
admin machine, issue each node its certificate and trust dir, sign the current layout with
`maillage layout sign`, and restart each node with `--trust-dir` and the signed layout; the old
secret file is no longer read and can be deleted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["DOC_KINDS", "DocKind", "LayoutAuthError", "LayoutSigner", "LayoutVerifier", "SIGNATURE_SIZE", "read_signed",
           "write_durably", "write_signed"]


class LayoutAuthError(Exception):
    """A signed document whose signature is missing or does not verify with the cluster's key."""


# ---------------------------------------------------------------------------------------------------
# Ed25519: the admin signs, nodes and the SDK verify


# The kinds of signed document, each its own signature domain (its name is part of the signed bytes):
#   layout               an applied layout: version N, the text of layout version N
#   staged-layout        a staged change: the version it was prepared against, the staged text
#   clear-staged-layout  the request to discard the staged change: the current version, empty text
#   access               the access document nodes hold (tenants, keys, derived verification keys)
#   bucket-record        reserved for signed bucket records (not used yet)
#   access-master        the admin's master access document (secrets), kept in the cluster dir only
#   audit-report         a residency report (`maillage audit --report`): format version, canonical JSON body
# To add a kind, append its name here and to DOC_KINDS' documentation above; never rename or
# reuse a name (signatures already made would change meaning). A name never contains NUL.
DocKind = Literal["layout", "staged-layout", "clear-staged-layout", "access", "bucket-record", "access-master",
                  "audit-report"]
DOC_KINDS: tuple[DocKind, ...] = get_args(DocKind)
SIGNATURE_SIZE = 64
_DOMAIN = b"maillage signed document v1\x00"


def _message(kind: DocKind, version: int, text: str) -> bytes:
    """What is signed: a domain prefix naming the document kind (NUL-terminated, so no kind's
    message is another's), then the same (version, text) as wave 1 (8-byte big-endian version,
    UTF-8 text)."""
    if kind not in DOC_KINDS:
        raise ValueError(f"document kind {kind!r}: must be one of {', '.join(DOC_KINDS)}")
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

    def sign(self, version: int, text: str, *, kind: DocKind) -> bytes:
        """The signature of (kind, version, text): the kind is always named, so no call signs in
        another's domain by default."""
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

    def key_id(self) -> str:
        """"sha256:<hex>" of the key's SubjectPublicKeyInfo (DER): names the signer of a document
        that travels without the cluster's files (a residency report), as layouts name node keys."""
        der = self._key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def verify(self, version: int, text: str, signature: bytes, *, kind: DocKind) -> None:
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


# ---------------------------------------------------------------------------------------------------
# The signed file: a signature line, then the text


_SIGNATURE_LINE = "# maillage signature: "
_OLD_SIGNATURE_LINE = "# maillage layout signature: "


def read_signed(path: str | os.PathLike[str]) -> tuple[str, bytes]:
    """(text, signature) of a signed file; the signature is empty when the file has none."""
    raw = Path(path).read_text(encoding="utf-8")
    first, sep, rest = raw.partition("\n")
    for prefix in (_SIGNATURE_LINE, _OLD_SIGNATURE_LINE):
        if first.startswith(prefix) and sep:
            try:
                return rest, bytes.fromhex(first[len(prefix):].strip())
            except ValueError:
                raise LayoutAuthError(f"{path}: the signature line is not hex") from None
    return raw, b""


def write_signed(path: str | os.PathLike[str], text: str, signature: bytes) -> Path:
    """Write (text, signature) durably (see `write_durably`)."""
    return write_durably(path, f"{_SIGNATURE_LINE}{signature.hex()}\n{text}")


def write_durably(path: str | os.PathLike[str], text: str) -> Path:
    """Replace a small file so a crash leaves the old or the new one, whole: temp file, fsync,
    rename, fsync of the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
