"""The access document this node enforces: tenants and access keys, highest signed version wins.

Keys are replicated to every node as one document signed by the cluster's admin key (the same key
that signs layouts, in its own signature domain), so losing a node loses no key, and a node never
accepts a key record it cannot verify. An admin's change is pushed to every node at once
(`PushAccess`); a node that was down learns the newer version from a peer's heartbeat and fetches
it, so a revocation reaches every reachable node within seconds. The document is persisted (one
signed file, replaced atomically) so a restart keeps the newest version; the node's trust dir may
bring the first one (`access.signed`).

The document's naming secret gives every node the key that names a bucket's chunks
(`chunk_key(owner, policy)`, see `proto/naming.py`); without one, names stay unkeyed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from maillage.node.trust.documents import SignedDoc
from maillage.proto import naming
from maillage.proto.trust.access import AccessDoc, AccessError, AccessKey, key_of, parse_access
from maillage.proto.trust.signing import LayoutAuthError, LayoutVerifier, read_signed, write_signed

__all__ = ["AccessState", "ACCESS_FILE"]

log = logging.getLogger(__name__)

ACCESS_FILE = "access.signed"


@dataclass(frozen=True)
class _Adopted:
    doc: AccessDoc
    text: str
    signature: bytes


class AccessState:
    """The current access document; `offer` adopts a newer signed one."""

    def __init__(self, path: Path, verifier: LayoutVerifier, initial: Path | None = None) -> None:
        self._path = path
        self._verifier = verifier
        self._current = _Adopted(AccessDoc(), "", b"")
        for source in (initial, path):
            if source is not None and source.exists():
                text, signature = read_signed(source)
                adopted = self._verified(text, signature, version=None)
                if adopted.doc.version > self._current.doc.version:
                    self._current = adopted
        if self._current.doc.version and not self._path.exists():
            self._persist()

    @property
    def version(self) -> int:
        return self._current.doc.version

    @property
    def doc(self) -> AccessDoc:
        return self._current.doc

    @property
    def text(self) -> str:
        return self._current.text

    @property
    def signature(self) -> bytes:
        return self._current.signature

    def key(self, key_id: str) -> AccessKey | None:
        """The active (not revoked) key with this id."""
        return key_of(self._current.doc, key_id)

    def secret_of(self, key_id: str) -> str | None:
        key = self.key(key_id)
        return key.secret if key is not None else None

    def chunk_key(self, tenant: str, policy: str) -> bytes | None:
        """K(tenant, policy), the key naming the chunks of a bucket of `tenant` under `policy`; None
        while the document has no naming secret (chunks are then named by their unkeyed BLAKE3)."""
        return naming.chunk_key(self._current.doc.naming_secret, tenant, policy)

    def offer(self, doc: SignedDoc) -> bool:
        """Adopt a signed document newer than the current one; LayoutAuthError if its signature
        does not verify, AccessError if it does not parse. Returns whether it was adopted."""
        adopted = self._verified(doc.text, doc.signature, version=doc.version)
        if adopted.doc.version <= self._current.doc.version:
            return False
        self._current = adopted
        self._persist()
        log.info("access document version %d adopted (%d tenant(s), %d key(s))", adopted.doc.version,
                 len(adopted.doc.tenants), len(adopted.doc.keys))
        return True

    def _verified(self, text: str, signature: bytes, *, version: int | None) -> _Adopted:
        doc = parse_access(text)
        if version is not None and doc.version != version:
            raise AccessError(f"access document says version {version} but its text has version {doc.version}")
        self._verifier.verify(doc.version, text, signature, kind="access")
        return _Adopted(doc, text, signature)

    def _persist(self) -> None:
        write_signed(self._path, self._current.text, self._current.signature)


# Errors a peer's or an admin's document may raise when offered.
OFFER_ERRORS = (LayoutAuthError, AccessError)
