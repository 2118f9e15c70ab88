"""Layout authentication on the node: every layout document is checked with the cluster's public key.

The signature scheme itself is `maillage.proto.trust.signing`: only the admin holds the private key (the
admin API signs with it); a node holds the public key from its trust dir and refuses any layout
document (applied, staged or learned from a peer) whose signature does not verify. A node cannot
sign a layout, so a compromised node cannot move anyone's data.

Each use has its own signature domain and its own method here, and every place a node adopts a
layout (PushLayout, a layout fetched by gossip or from a seed, the start-up file, the stored file)
goes through `verify`, which accepts only kind "layout": a staged change (kind "staged-layout",
signed with the version it was prepared against, which an applied layout of that version would
otherwise look like) or a request to clear it ("clear-staged-layout") never becomes an applied
layout, on a node one version behind or anywhere else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from maillage.node.trust.layout_state import LayoutState
from maillage.placement import Layout, LayoutError, PlacementError, parse_layout
from maillage.proto.trust.signing import LayoutAuthError, LayoutVerifier

__all__ = ["LayoutAuthError", "LayoutDoc", "SignedDoc", "SignedLayouts", "discard_unverified_staged"]


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

    def verify(self, doc: SignedDoc) -> Layout:
        """The applied layout of a signed document (kind "layout"), which carries its own version."""
        self.verifier.verify(doc.version, doc.text, doc.signature, kind="layout")
        layout = parse_layout(doc.text)
        if layout.version != doc.version:
            raise LayoutAuthError(f"layout document says version {doc.version} but its text has "
                                  f"version {layout.version}")
        return layout

    def verify_staged(self, doc: SignedDoc, *, current: int) -> Layout:
        """The layout of a staged change (kind "staged-layout"), which carries the version it was
        prepared against: that must still be the `current` one."""
        self.verifier.verify(doc.version, doc.text, doc.signature, kind="staged-layout")
        layout = parse_layout(doc.text)
        if doc.version != current:
            raise LayoutError(f"staged change was prepared against layout version {doc.version}, "
                              f"but the current version is {current}: prepare it again")
        return layout

    def verify_clear(self, doc: SignedDoc, *, current: int) -> None:
        """A signed request with no layout, to discard the staged change (kind "clear-staged-layout"),
        made for the `current` version (an old request replayed later discards nothing)."""
        self.verifier.verify(doc.version, doc.text, doc.signature, kind="clear-staged-layout")
        if doc.version != current:
            raise LayoutError(f"the request to discard the staged change was made at layout version "
                              f"{doc.version}, but the current version is {current}")


def discard_unverified_staged(state: LayoutState, signed: SignedLayouts, log: logging.Logger) -> None:
    """Discard a stored staged change that is not signed as one (kind "staged-layout"): one staged
    before staged changes had their own signature domain, or a damaged file. A staged change only
    waits for `apply`; the admin stages it again (and could neither read nor revert it otherwise)."""
    try:
        staged = state.staged()
        if staged is None:
            return
        signed.verify_staged(LayoutDoc(staged.base_version, staged.text, staged.signature),
                             current=staged.base_version)
    except (LayoutAuthError, PlacementError, ValueError, KeyError) as err:
        log.warning("discarded the stored staged layout change (%s): stage it again", err)
        state.clear_staged()
