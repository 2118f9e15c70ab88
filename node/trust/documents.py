"""Layout authentication on the node: every layout document is checked with the cluster's public key.

The signature scheme itself is `maillage.proto.trust.signing`: only the admin holds the private key (the
admin API signs with it); a node holds the public key from its trust dir and refuses any layout
document (applied, staged or learned from a peer) whose signature does not verify. A node cannot
sign a layout, so a compromised node cannot move anyone's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from maillage.placement import Layout, LayoutError, parse_layout
from maillage.proto.trust.signing import LayoutAuthError, LayoutVerifier

__all__ = ["LayoutAuthError", "LayoutDoc", "SignedDoc", "SignedLayouts"]


class SignedDoc(Protocol):
    """A signed document as it travels (the protobuf `LayoutDoc` and `AccessDoc` have this shape)."""

    @property
    def version(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def signature(self) -> bytes: ...


@dataclass(frozen=True)
class LayoutDoc:
    version: int
    text: str
    signature: bytes


class SignedLayouts:
    """Check layout documents with the cluster's public layout-signing key."""

    def __init__(self, verifier: LayoutVerifier) -> None:
        self.verifier = verifier

    def _check(self, doc: SignedDoc) -> None:
        self.verifier.verify(doc.version, doc.text, doc.signature)

    def verify(self, doc: SignedDoc, *, staged_on: int | None = None) -> Layout:
        """The layout of a signed document. An applied one carries its own version; a staged
        one carries the version it was prepared against, which must still be current."""
        self._check(doc)
        layout = parse_layout(doc.text)
        if staged_on is None and layout.version != doc.version:
            raise LayoutAuthError(f"layout document says version {doc.version} but its text has "
                                  f"version {layout.version}")
        if staged_on is not None and doc.version != staged_on:
            raise LayoutError(f"staged change was prepared against layout version {doc.version}, "
                              f"but the current version is {staged_on}: prepare it again")
        return layout

    def verify_blank(self, doc: SignedDoc) -> None:
        """A signed request with no layout (clearing the staged change)."""
        self._check(doc)
