"""The access document this node enforces: tenants and access keys, highest signed version wins.

Keys are replicated to every node as one document signed by the cluster's admin key (the same key
that signs layouts, in its own signature domain), so losing a node loses no key, and a node never
accepts a key record it cannot verify. An admin's change is pushed to every node at once
(`PushAccess`); a node that was down learns the newer version from a peer's heartbeat and fetches
it, so a revocation reaches every reachable node within seconds. The document is persisted (one
signed file, replaced atomically) so a restart keeps the newest version; the node's trust dir may
bring the first one (`access.signed`).

The document is the admin's publication (`maillage.proto.trust.node_access`): no secret of any key
and not the naming secret, but the derived keys that verify signatures for a window of dates
(`signing_key`) and the keys that name each tenant's chunks per policy (`chunk_key`, see
`proto/naming.py`; without keyed names, names stay unkeyed). A stored document in the old format
(the admin's master, holding secrets) is not taken: the one in the data dir is deleted, and the
node waits for the admin's next publication (a warning says so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from maillage.node.errors import PeerUnavailable
from maillage.node.trust.documents import SignedDoc
from maillage.proto.trust.access import FORMAT as MASTER_FORMAT
from maillage.proto.trust.access import AccessError, KeyInfo
from maillage.proto.trust.node_access import NodeAccess, parse_node_access
from maillage.proto.trust.signing import LayoutAuthError, LayoutVerifier, read_signed, write_signed

__all__ = ["AccessState", "ACCESS_FILE", "NoNamingKey"]

log = logging.getLogger(__name__)

ACCESS_FILE = "access.signed"


class NoNamingKey(PeerUnavailable):
    """Names are keyed but the access document carries no K for this (tenant, policy): the policy
    or the tenant is newer than the admin's last publication."""


@dataclass(frozen=True)
class _Adopted:
    doc: NodeAccess
    text: str
    signature: bytes


class AccessState:
    """The current access document; `offer` adopts a newer signed one."""

    def __init__(self, path: Path, verifier: LayoutVerifier, initial: Path | None = None) -> None:
        self._path = path
        self._verifier = verifier
        self._current = _Adopted(NodeAccess(), "", b"")
        for source in (initial, path):
            if source is not None and source.exists():
                text, signature = read_signed(source)
                if f'"format":"{MASTER_FORMAT}"' in text:
                    log.warning("%s holds an access document in the old format (every key's secret): not taken%s; "
                                "the admin must publish one (`maillage key refresh`)", source,
                                ", deleted" if source == path else " (delete it from the trust dir)")
                    if source == path:
                        source.unlink()
                    continue
                adopted = self._verified(text, signature, version=None)
                if adopted.doc.version > self._current.doc.version:
                    self._current = adopted
        if self._current.doc.version and not self._path.exists():
            self._persist()

    @property
    def version(self) -> int:
        return self._current.doc.version

    @property
    def doc(self) -> NodeAccess:
        return self._current.doc

    @property
    def text(self) -> str:
        return self._current.text

    @property
    def signature(self) -> bytes:
        return self._current.signature

    def key(self, key_id: str) -> KeyInfo | None:
        """The active (not revoked) key with this id."""
        return self._current.doc.key(key_id)

    def signing_key(self, key_id: str, date: str, region: str, service: str) -> bytes:
        """The published derived key of (key id, date, region, service) (`requestauth.SigningKeyOf`):
        NoSigningKey for an unknown key, a date outside the window or a scope not published."""
        return self._current.doc.signing_key(key_id, date, region, service)

    def chunk_key(self, tenant: str, policy: str) -> bytes | None:
        """K(tenant, policy), the key naming the chunks of a bucket of `tenant` under `policy`; None
        while names are not keyed (chunks are then named by their unkeyed BLAKE3); NoNamingKey when
        they are but the admin's publication does not cover this pair."""
        try:
            return self._current.doc.chunk_key(tenant, policy)
        except KeyError:
            raise NoNamingKey(f"this node has no key naming the chunks of tenant {tenant!r} under policy {policy!r}: "
                              f"access document v{self.version} predates that tenant or policy; the admin must "
                              "publish it again (`maillage key refresh`)") from None

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
        doc = parse_node_access(text)
        if version is not None and doc.version != version:
            raise AccessError(f"access document says version {version} but its text has version {doc.version}")
        self._verifier.verify(doc.version, text, signature, kind="access")
        return _Adopted(doc, text, signature)

    def _persist(self) -> None:
        write_signed(self._path, self._current.text, self._current.signature)


# Errors a peer's or an admin's document may raise when offered.
OFFER_ERRORS = (LayoutAuthError, AccessError)
