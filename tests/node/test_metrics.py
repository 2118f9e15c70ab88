"""Node metrics in-process: the catalogue against a real scrape, the state it reads (peers seen
down, partitions short of R, residency violations), labels, and a registry per node."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from maillage.node.metrics.registry import SPECS, NodeMetrics, exported_names
from maillage.node.metrics.state import StateCollector, node_labels
from maillage.node.rpc.servicers import SOFTWARE_VERSION

from .conftest import TIMINGS, run

BUCKET, KEY = "zq-metrics-secret-bucket", "zq-metrics-secret-key/report.pdf"


def scrape_of(mesh, node_id: str, **extra) -> tuple[str, dict[tuple[str, frozenset], float]]:
    """The text a scrape of `node_id` gives, and its samples by (name, labels)."""
    node = mesh.nodes[node_id]
    metrics = NodeMetrics()
    sources = node.metrics_sources(SOFTWARE_VERSION)
    for name, value in extra.items():
        setattr(sources, name, value)
    metrics.registry.register(StateCollector(sources))
    metrics.labels = lambda: node_labels(node.layout, node_id)
    text = metrics.exposition().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_a_scrape_holds_every_metric_of_the_catalogue_and_no_other(mesh):
    run(mesh.create_bucket(BUCKET, "france-only"))
    manifest = run(mesh.put(BUCKET, KEY, b"x" * 5000))
    chunk_digests = {c.digest for c in manifest.chunks}  # 1 KiB chunks: 4 alike and the tail
    run(mesh.repair())
    text, samples = scrape_of(mesh, "paris-1", certificate_expiry=time.time() + 86400,
                              s3_connections=lambda: (3, 1), deadline_ended=lambda: 2,
                              datagrams=lambda: {"acked": 5, "dropped_stale": 1})
    names = {name for name, _ in samples}
    assert names <= exported_names(), names - exported_names()
    for spec in SPECS:
        assert f"# HELP {spec.name}" in text, spec.name
    # every sample is labelled with the node it comes from, its site and region
    for _, labels in samples:
        assert {("node", "paris-1"), ("site", "paris-1"), ("region", "eu/fr/idf")} <= labels
    assert value(samples, "maillage_chunks_stored") >= 1
    held = mesh.nodes["paris-1"].local.held_chunks.get("france-only", 0)
    assert held == value(samples, "maillage_chunks_held", policy="france-only")
    assert held == sum(1 for d in chunk_digests if mesh.nodes["paris-1"].local.chunks.has(d))
    # each chunk has its R=2 copies, each counted by its holder's last walk
    assert sum(n.local.held_chunks.get("france-only", 0) for n in mesh.nodes.values()) == 2 * len(chunk_digests)
    # the object's manifest rests on its R=2 index replicas, each counting it
    manifests = {n: node.local.held_manifests.get("france-only", 0) for n, node in mesh.nodes.items()}
    assert sum(manifests.values()) == 2, manifests
    assert manifests["paris-1"] == value(samples, "maillage_manifests_held", policy="france-only")
    assert value(samples, "maillage_partitions_owned", policy="france-only") > 0
    assert value(samples, "maillage_s3_connections_refused_total") == 1
    assert value(samples, "maillage_grpc_deadline_ended_total") == 2
    assert value(samples, "maillage_membership_datagrams_total", event="acked") == 5
    assert value(samples, "maillage_build_info", version=SOFTWARE_VERSION) == 1
    assert abs(value(samples, "maillage_clock_unix_seconds") - mesh.nodes["paris-1"].clock.time()) < 5
    assert BUCKET not in text and KEY not in text and "zq-metrics" not in text


def test_a_silent_peer_is_seen_down_and_its_partitions_short_of_r(mesh):
    run(mesh.create_bucket(BUCKET, "france-only"))
    run(mesh.put(BUCKET, KEY, b"y" * 5000))
    run(mesh.gossip(2))
    run(mesh.repair())
    _, before = scrape_of(mesh, "paris-1")
    assert value(before, "maillage_peer_up", peer="lyon-1") == 1
    assert value(before, "maillage_peers", state="up") == 4
    assert value(before, "maillage_partitions_short_of_r", policy="france-only") == 0
    mesh.down("lyon-1")
    mesh.advance(TIMINGS.suspect_after)
    run(mesh.gossip(3))
    _, after = scrape_of(mesh, "paris-1")
    assert value(after, "maillage_peer_up", peer="lyon-1") == 0
    assert value(after, "maillage_peer_up", peer="munich-1") == 1
    assert value(after, "maillage_peers", state="suspect") + value(after, "maillage_peers", state="down") == 1
    # short: the French partitions paris-1 owns with lyon-1 (suspected, not yet marked out)
    table = mesh.nodes["paris-1"].layout.table("france-only")
    shared = sum(1 for p in range(len(table)) if {"paris-1", "lyon-1"} <= set(table.replicas(p)))
    assert shared > 0
    assert value(after, "maillage_partitions_short_of_r", policy="france-only") == shared
    assert value(after, "maillage_partitions_short_of_r", policy="eu-wide") <= value(
        after, "maillage_partitions_owned", policy="eu-wide")


def test_chunks_of_a_policy_held_outside_its_territory_are_a_residency_violation(mesh):
    run(mesh.create_bucket(BUCKET, "france-only"))
    manifest = run(mesh.put(BUCKET, KEY, b"z" * 5000))
    digest = manifest.chunks[0].digest
    holder = next(n for n in mesh.nodes.values() if n.local.chunks.has(digest))
    frame = run(holder.local.get_chunk(digest))
    run(mesh.repair())
    _, clean = scrape_of(mesh, "munich-1")
    assert value(clean, "maillage_residency_violations") == 0
    munich = mesh.nodes["munich-1"]   # eu/de: outside france-only; plant a copy as a faulty node would
    munich.local.chunks.put(frame, "france-only", "")
    munich.local.meta.hold_chunks("france-only", [digest], now_ms=int(time.time() * 1000))
    run(mesh.repair(nodes=["munich-1"]))
    _, planted = scrape_of(mesh, "munich-1")
    assert value(planted, "maillage_residency_violations") == 1


def test_each_node_has_its_own_registry():
    a, b = NodeMetrics(process=False), NodeMetrics(process=False)
    a.requests.method("grpc", "Objects/HeadObject").observe("OK", 0.01)
    a.requests.method("grpc", "Objects/HeadObject").observe("NOT_FOUND", 0.02)
    text_a, text_b = a.exposition().decode(), b.exposition().decode()
    assert 'maillage_requests_total{door="grpc",method="Objects/HeadObject",outcome="OK"} 1.0' in text_a
    assert 'outcome="NOT_FOUND"} 1.0' in text_a
    assert "Objects/HeadObject" not in text_b
    assert 'maillage_request_duration_seconds_count{door="grpc",method="Objects/HeadObject"} 2.0' in text_a
