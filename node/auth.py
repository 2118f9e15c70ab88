"""Layout authentication on the node: documents checked and signed with the cluster key.

The signature scheme itself is `maillage.proto.signing` (the admin API signs with it too); here is
what the node does with it: refuse any layout document (applied or staged) whose signature does not
match, and sign the operator's own layout file at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from maillage.placement import Layout, LayoutError, parse_layout
from maillage.proto.signing import SECRET_ENV, ClusterKey, LayoutAuthError, new_secret_file

__all__ = ["ClusterKey", "LayoutAuthError", "LayoutDoc", "SignedDoc", "SignedLayouts", "new_secret_file",
           "SECRET_ENV"]


class SignedDoc(Protocol):
    """A layout document as it travels (the protobuf `LayoutDoc` has this shape too)."""

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
    """Check and sign layout documents with the cluster key (None: accept no change)."""

    def __init__(self, key: ClusterKey | None) -> None:
        self.key = key

    def _check(self, doc: SignedDoc) -> None:
        if self.key is None:
            raise LayoutAuthError("this node was started without the cluster secret: it accepts no "
                                  "layout change (restart it with --secret-file)")
        self.key.verify(doc.version, doc.text, doc.signature)

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

    def sign(self, version: int, text: str) -> bytes:
        return self.key.sign(version, text) if self.key is not None else b""
