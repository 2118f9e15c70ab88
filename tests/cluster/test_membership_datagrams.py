"""Membership datagrams between real node processes (node/rpc/datagrams.py).

The nodes of a loopback mesh probe each other with sealed UDP datagrams; one restarted with
`--no-membership-datagrams` (as a node behind a network that drops UDP would be) listens on no UDP
port, and its peers probe it over gRPC instead: every node still sees every other up, the peers
count their fallbacks, and the others keep probing each other over UDP (events read from each
node's /metrics)."""

from __future__ import annotations

import ssl
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maillage.placement import Policy
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout
from maillage.testing.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

SITES = tuple(SiteSpec(name, location) for name, location in (
    ("paris-1", "eu/fr/idf"), ("lyon-1", "eu/fr/ara"), ("lille-1", "eu/fr/hdf"), ("munich-1", "eu/de/bayern")))
POLICIES = (Policy(name="eu-wide", allow=(("eu",),), replicas=2),)
FAST = ("--heartbeat-interval", "0.3", "--suspect-after", "1.5")
WITHOUT = "lille-1"


def datagram_events(mesh: LocalMesh, node_id: str) -> dict[str, float]:
    """The node's `maillage_membership_datagrams_total` by event, from its /metrics."""
    context = ssl.create_default_context(cafile=str(mesh.s3_ca_file))
    request = urllib.request.Request(mesh.ops_url(node_id) + "/metrics",
                                     headers={"Authorization": f"Bearer {mesh.metrics_token}"})
    with urllib.request.urlopen(request, context=context, timeout=5) as r:
        text = r.read().decode()
    return {s.labels["event"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "maillage_membership_datagrams_total"}


def test_peers_probe_over_udp_and_a_node_without_datagrams_over_grpc_all_seen_up(tmp_path):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path, extra_args=FAST, ops=True) as mesh:
        others = [s.name for s in SITES if s.name != WITHOUT]
        eventually(lambda: all(datagram_events(mesh, n).get("acked", 0) > 0 for n in [*others, WITHOUT]),
                   timeout=20, what="every node's probes acked over UDP")
        mesh.stop_node(WITHOUT)
        mesh.start_node(WITHOUT, extra_args=("--no-membership-datagrams",))
        assert mesh.wait_all_up(timeout=20), "a node without datagrams was not seen up by all"
        before = {n: datagram_events(mesh, n) for n in others}
        eventually(lambda: all(datagram_events(mesh, n).get("fell_back", 0) >= 1 for n in others),
                   timeout=30, what=f"every peer probing {WITHOUT} over gRPC after its datagram went unanswered")
        assert datagram_events(mesh, WITHOUT) == {}   # it sent and answered none
        assert mesh.wait_all_up(timeout=20)           # and no one suspects anyone for it
        # the others still probe each other over UDP
        eventually(lambda: all(datagram_events(mesh, n).get("acked", 0) > before[n].get("acked", 0) for n in others),
                   timeout=20, what="the other nodes' probes of each other still acked over UDP")
