"""The failure detector on an injected clock, and layout signatures."""

from __future__ import annotations

import pytest

from maillage.node.cluster.membership import FailureDetector, PeerState
from maillage.node.replicas.transport import PeerView
from maillage.node.runtime.clock import ManualClock
from maillage.node.trust.documents import LayoutAuthError
from maillage.proto.trust.signing import LayoutSigner, LayoutVerifier


def test_silence_moves_a_peer_from_up_to_suspect_to_down_and_speech_brings_it_back():
    clock = ManualClock(monotonic=100.0)
    fd = FailureDetector("a", suspect_after=5, down_after=30, clock=clock)
    assert fd.state("b") is PeerState.UP  # a fresh node gives its peers one grace period
    clock.advance(5)
    assert fd.state("b") is PeerState.SUSPECT and not fd.is_up("b") and not fd.is_down("b")
    clock.advance(25)
    assert fd.is_down("b")
    fd.heard("b")
    assert fd.is_up("b") and fd.silence("b") == 0
    assert fd.state("a") is PeerState.UP  # never suspects itself


def test_a_peer_view_counts_only_when_fresher():
    clock = ManualClock(monotonic=100.0)
    fd = FailureDetector("a", suspect_after=5, down_after=30, clock=clock)
    clock.advance(10)
    fd.absorb([PeerView("b", "up", 2.0), PeerView("a", "up", 99.0)])
    assert fd.silence("b") == pytest.approx(2.0)
    fd.absorb([PeerView("b", "up", 8.0)])  # older news: ignored
    assert fd.silence("b") == pytest.approx(2.0)
    views = {v.node_id: v for v in fd.views(["b", "c"])}
    assert views["b"].state == "up" and views["c"].state == "suspect"


def test_thresholds_are_checked():
    with pytest.raises(ValueError):
        FailureDetector("a", suspect_after=10, down_after=5)


def test_signatures_bind_version_text_kind_and_key(tmp_path):
    key = LayoutSigner.generate()
    (tmp_path / "k.pub").write_bytes(key.public_key_pem())
    verifier = LayoutVerifier.from_file(tmp_path / "k.pub")  # nodes hold only the public half
    sig = key.sign(7, "text", kind="layout")
    verifier.verify(7, "text", sig, kind="layout")
    for version, text, signature in ((8, "text", sig), (7, "texT", sig), (7, "text", b""),
                                     (7, "text", LayoutSigner.generate().sign(7, "text", kind="layout")),
                                     (7, "text", key.sign(7, "text", kind="access"))):
        with pytest.raises(LayoutAuthError):
            verifier.verify(version, text, signature, kind="layout")
    with pytest.raises(ValueError):
        LayoutVerifier.from_pem(b"not a key")


def test_a_node_heard_again_after_silence_is_reported_recovered_once():
    from maillage.node.runtime.clock import ManualClock

    clock = ManualClock()
    detector = FailureDetector("a", suspect_after=2, down_after=5, clock=clock)
    recovered: list[str] = []
    detector.on_recovered = recovered.append
    detector.heard("b")
    clock.advance(1)
    detector.heard("b")
    assert recovered == []                      # never silent: nothing to hand back
    clock.advance(3)
    assert not detector.is_up("b")
    detector.heard("b", silent_for=2.5)         # a peer heard it 2.5 s ago: still suspect here
    assert recovered == []
    detector.heard("b")
    detector.heard("b")
    assert recovered == ["b"]                   # once, at the transition back to up
