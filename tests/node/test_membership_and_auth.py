"""The failure detector on an injected clock, and layout signatures."""

from __future__ import annotations

import pytest

from maillage.node.auth import ClusterKey, LayoutAuthError, new_secret_file
from maillage.node.clock import ManualClock
from maillage.node.membership import FailureDetector, PeerState, PeerView


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


def test_signatures_bind_version_and_text(tmp_path):
    key = ClusterKey.from_file(new_secret_file(tmp_path / "k"))
    sig = key.sign(7, "text")
    key.verify(7, "text", sig)
    for version, text, signature in ((8, "text", sig), (7, "texT", sig), (7, "text", b""),
                                     (7, "text", ClusterKey(b"another secret of 32 bytes....").sign(7, "text"))):
        with pytest.raises(LayoutAuthError):
            key.verify(version, text, signature)
    with pytest.raises(FileExistsError):
        new_secret_file(tmp_path / "k")  # never overwrites a cluster's secret
    with pytest.raises(ValueError):
        ClusterKey(b"short")
