"""The admin side of pinning: issuing a node certificate records its key in the cluster dir, and
the layouts the admin tooling signs pin the recorded keys (every node's, or none yet)."""

from __future__ import annotations

import pytest

from maillage.client.admin import init_cluster, node_trust_dir, pin_certificate, pin_layout, read_node_keys
from maillage.placement import Layout, Node, Policy, Site, changes
from maillage.proto.trust.identity import IdentityError, certificate_key, create_cluster, issue_node_certificate
from maillage.testing.forged import forge_node_certificate


def layout_of(*ids: str) -> Layout:
    return Layout(1, 4, (Site("s", ("eu", "fr")),), tuple(Node(i, f"10.0.0.{k}:7000", "s", 1 << 40)
                                                        for k, i in enumerate(ids, 1)),
                  (Policy("p", (("eu",),)),))


def test_issuing_records_the_key_and_a_layout_pins_once_every_node_has_one(tmp_path) -> None:
    cluster = init_cluster(tmp_path / "cluster", "keys").cluster.directory
    a = node_trust_dir(cluster, "a", tmp_path / "a")
    assert read_node_keys(cluster) == {"a": certificate_key(a.cert)}
    layout = layout_of("a", "b")
    same, warnings = pin_layout(layout, read_node_keys(cluster))
    assert same == layout and "no key recorded for b" in warnings[0]       # not half pinned
    b = node_trust_dir(cluster, "b", tmp_path / "b")
    pinned, warnings = pin_layout(layout, read_node_keys(cluster))
    assert warnings == [] and pinned.pins_keys
    assert pinned.node("b").cert_key == certificate_key(b.cert)
    again = node_trust_dir(cluster, "b", tmp_path / "b")                  # a rotation
    rotated, _ = pin_layout(pinned, read_node_keys(cluster))
    assert rotated.node("b").cert_key == certificate_key(again.cert) != pinned.node("b").cert_key
    assert changes.layout_diff(pinned, rotated)[0].startswith("~ node b: cert_key ")
    # a pinned layout keeps its pins for nodes with no recorded key (the admin's file lost)
    assert pin_layout(rotated, {}) == (rotated, [])


def test_a_certificate_issued_earlier_is_recorded_only_if_it_is_that_node_s(tmp_path) -> None:
    cluster = create_cluster(tmp_path / "cluster", "keys")
    earlier = issue_node_certificate(cluster, "a", tmp_path / "a")         # before pinning: no record
    assert read_node_keys(cluster.directory) == {}
    assert pin_certificate(cluster.directory, "a", earlier.cert) == certificate_key(earlier.cert)
    assert read_node_keys(cluster.directory) == {"a": certificate_key(earlier.cert)}
    with pytest.raises(IdentityError, match="not a node certificate of 'b'"):
        pin_certificate(cluster.directory, "b", earlier.cert)
    other = create_cluster(tmp_path / "other", "other")
    stranger = issue_node_certificate(other, "a", tmp_path / "stranger")
    with pytest.raises(IdentityError, match="not a certificate issued by the cluster CA"):
        pin_certificate(cluster.directory, "a", stranger.cert)
    bare = forge_node_certificate(cluster.directory, "a", tmp_path / "bare", usages=None)
    with pytest.raises(IdentityError, match="serverAuth, clientAuth"):
        pin_certificate(cluster.directory, "a", bare.cert)
