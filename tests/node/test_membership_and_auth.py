"""The failure detector on an injected clock, and layout signatures."""

from __future__ import annotations

import pytest

from maillage.node.cluster.membership import FailureDetector, PeerState
from maillage.node.runtime.clock import ManualClock
from maillage.node.trust.documents import LayoutAuthError
from maillage.proto.trust.signing import LayoutSigner, LayoutVerifier


def test_a_failed_probe_moves_a_peer_from_up_to_suspect_to_down_and_speech_brings_it_back():
    # Mechanics adapted for SWIM: silence alone no longer suspects a peer (at 1,000 nodes a node
    # hears from most peers rarely); this node's own failed probe does (`suspect`).
    clock = ManualClock(monotonic=100.0)
    fd = FailureDetector("a", suspect_after=5, down_after=30, clock=clock)
    assert fd.state("b") is PeerState.UP  # a fresh node gives its peers the benefit of the doubt
    clock.advance(5)
    assert fd.suspect("b")
    assert fd.state("b") is PeerState.SUSPECT and not fd.is_up("b") and not fd.is_down("b")
    clock.advance(25)
    assert not fd.is_down("b")                 # down only after down_after
    clock.advance(5)
    assert fd.is_down("b")
    fd.heard("b")
    assert fd.is_up("b") and fd.silence("b") == 0
    assert not fd.suspect("a")
    assert fd.state("a") is PeerState.UP  # never suspects itself


def test_another_nodes_word_never_changes_the_state_only_the_node_itself_does():
    # Was "a peer view counts only when fresher": third-hand recency claims are gone (one lying
    # node kept a paused node up on all its peers). Others' suspicions only confirm one of ours,
    # which shortens the Lifeguard timeout, never below down_after.
    clock = ManualClock(monotonic=100.0)
    fd = FailureDetector("a", suspect_after=5, down_after=10, clock=clock)
    fd.cluster_size = 100                      # floor 5 x log10(100) = 10 s, up to 30 s unconfirmed
    fd.confirm("b", by="c")                    # not suspected here: nothing to confirm
    assert fd.is_up("b")
    fd.suspect("b")
    assert fd.suspicion_timeout("b") == pytest.approx(30.0)
    for confirmer in ("c", "d", "e", "f", "a", "b"):
        fd.confirm("b", by=confirmer)
    assert fd.suspicion_timeout("b") == pytest.approx(10.0)   # three independent confirmations: the floor
    clock.advance(9.9)
    assert not fd.is_down("b")
    clock.advance(0.1)
    views = {v.node_id: v for v in fd.views(["b", "c"])}
    assert views["b"].state == "down" and views["c"].state == "up"
    assert views["b"].silent_seconds == pytest.approx(10.0)


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
    detector.suspect("b")                       # (mechanics: a failed probe, not silence, suspects)
    assert not detector.is_up("b")
    assert not detector.unsettled()
    assert recovered == []
    detector.heard("b")
    detector.heard("b")
    assert recovered == ["b"]                   # once, at the transition back to up
    assert detector.unsettled()
    clock.advance(61)
    assert not detector.unsettled()
