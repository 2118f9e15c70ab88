"""A node adopts as its layout only a document signed as an applied layout (kind "layout").

The attack (issue 22): a staged change is signed with the version it was prepared against and has
that version in its text, so it reads exactly like an applied layout of that version; offered to a
node one version behind (by PushLayout, or handed out through gossip by a hostile node), it was
adopted, and the real layout of that version was then never taken. Staged changes, requests to
clear them and access documents each have their own signature domain.
"""

from __future__ import annotations

import dataclasses

import pytest

from maillage.node.trust.documents import LayoutAuthError, LayoutDoc, SignedLayouts
from maillage.placement import Layout, LayoutError, Policy, format_layout
from maillage.proto.trust.signing import LayoutSigner

from .conftest import make_layout, run

SIGNER = LayoutSigner.generate()
SIGNED = SignedLayouts(SIGNER.verifier())


def widened(layout: Layout) -> Layout:
    """The staged change of the attack: france-only widened to the whole of the EU, same version."""
    policies = tuple(Policy("france-only", (("eu",),), 2) if p.name == "france-only" else p for p in layout.policies)
    return dataclasses.replace(layout, policies=policies)


def doc(layout: Layout, kind: str, version: int | None = None, text: str | None = None) -> LayoutDoc:
    text = format_layout(layout) if text is None else text
    version = layout.version if version is None else version
    return LayoutDoc(version, text, SIGNER.sign(version, text, kind=kind))  # type: ignore[arg-type]


def test_a_staged_change_never_verifies_as_an_applied_layout_nor_the_reverse() -> None:
    v2 = make_layout(version=2)
    staged = doc(widened(v2), "staged-layout")   # prepared against v2: version 2, text of version 2
    assert SIGNED.verify_staged(staged, current=2) == widened(v2)
    with pytest.raises(LayoutAuthError, match="does not verify"):
        SIGNED.verify(staged)
    applied = doc(v2, "layout")
    assert SIGNED.verify(applied) == v2
    with pytest.raises(LayoutAuthError, match="does not verify"):
        SIGNED.verify_staged(applied, current=2)
    with pytest.raises(LayoutError, match="prepared against layout version 2"):
        SIGNED.verify_staged(staged, current=3)


def test_access_documents_and_clear_requests_are_no_layouts() -> None:
    v2 = make_layout(version=2)
    for kind in ("access", "clear-staged-layout", "bucket-record"):
        with pytest.raises(LayoutAuthError, match="does not verify"):
            SIGNED.verify(doc(v2, kind))
        with pytest.raises(LayoutAuthError, match="does not verify"):
            SIGNED.verify_staged(doc(v2, kind), current=2)
    clear = doc(v2, "clear-staged-layout", text="")
    SIGNED.verify_clear(clear, current=2)
    with pytest.raises(LayoutError, match="made at layout version 2"):
        SIGNED.verify_clear(clear, current=3)           # an old request replayed later
    for kind in ("layout", "staged-layout", "access"):
        with pytest.raises(LayoutAuthError, match="does not verify"):
            SIGNED.verify_clear(doc(v2, kind, text=""), current=2)


def test_a_staged_change_handed_out_by_gossip_is_never_adopted(mesh) -> None:
    """munich-1 (hostile) holds v2 and hands out, as its current layout, the admin's staged change
    against v2; paris-1 and the others, at v1, refuse it and still take the real v2 afterwards."""
    async def main():
        v2 = make_layout(version=2)
        staged = widened(v2)
        text = format_layout(staged)
        munich = mesh.nodes["munich-1"]
        signature = mesh.signer.sign(2, text, kind="staged-layout")
        assert munich.layout.offer(staged, signature, text)  # its own state, bypassing any check
        await mesh.gossip(4)
        for node_id, node in mesh.nodes.items():
            if node is not munich:
                assert node.layout.current.version == 1, node_id
                assert node.layout.current.policy("france-only").allow == (("eu", "fr"),)
        real = format_layout(v2)
        assert mesh.nodes["paris-1"].layout.offer(v2, mesh.signer.sign(2, real, kind="layout"), real)
        await mesh.gossip(4)
        for node_id, node in mesh.nodes.items():
            if node is not munich:
                assert node.layout.current == v2, node_id
    run(main())
