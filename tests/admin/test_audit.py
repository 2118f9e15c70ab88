"""`maillage audit` against a real mesh (clean, a planted violation, a dead node) and the pure judgement."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from maillage.client import Client
from maillage.client.admin import AuditError, Inventory, collect_audit, evaluate
from maillage.placement import Policy
from maillage.storage import ChunkStore
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import POLICIES, SITES

CHUNK = 256 * 1024
SHARED = os.urandom(3 * CHUNK)          # stored in both buckets (two policies: two sets of chunk names)
FRENCH_ONLY = os.urandom(2 * CHUNK + 17)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("audit"),
                   extra_args=("--chunk-size", str(CHUNK))) as m:
        with Client(profile=m.profile) as client:
            client.create_bucket("scans", policy="france-only")
            client.create_bucket("public", policy="eu-wide")
            client.put_object("scans", "shared.bin", SHARED)
            client.put_object("scans", "secret.bin", FRENCH_ONLY)
            client.put_object("scans", "small.txt", b"inline")
            client.put_object("scans", "gone.txt", b"deleted soon")
            client.delete_object("scans", "gone.txt")
            client.put_object("public", "shared.bin", SHARED)
        yield m


def _admin(mesh, node_id: str):
    """The mesh's admin profile, reaching the mesh through one node."""
    return dataclasses.replace(mesh.admin_profile, endpoints=(mesh.address(node_id),))


def _digests(mesh, bucket: str, key: str) -> list[bytes]:
    """The object's chunk names, as its manifest gives them (keyed per tenant and policy: they
    cannot be computed from the bytes alone)."""
    with Client(profile=mesh.profile) as client:
        return [digest for digest, _ in client.object_chunks(bucket, key)]


def test_clean_mesh_is_fully_replicated(mesh):
    report = collect_audit(_admin(mesh, "paris-1"))
    assert report.violations == []
    assert report.unreachable == []
    assert report.under_replicated == 0
    assert report.ok and report.fully_replicated
    assert report.objects == 4                      # scans: shared, secret, small; public: shared
    assert report.manifests == 5                    # + the tombstone of gone.txt
    # SHARED in two policies is two sets of chunks: names are keyed per (tenant, policy)
    assert report.chunks == 3 + 3 + 3
    assert report.sites == 4
    assert report.buckets == 2 and report.nodes == 4
    # the shared content legitimately rests in Germany for the EU-wide bucket
    munich = ChunkStore(mesh.data_dir("munich-1") / "chunks")
    assert any(munich.path_of(d).exists() for d in _digests(mesh, "public", "shared.bin"))
    assert report.copies >= 2 * (report.manifests + report.chunks)
    doc = json.loads(report.to_json())
    assert doc["ok"] is True and doc["fully_replicated"] is True and doc["objects"] == 4


def test_signed_report_of_a_clean_mesh_verifies_offline_and_one_flipped_byte_fails(mesh, tmp_path):
    report, page = tmp_path / "report.json", tmp_path / "report.html"
    cli = _run_cli("audit", "--endpoint", mesh.address("paris-1"), "--report", str(report), "--html", str(page),
                   mesh=mesh)
    assert cli.returncode == 0, cli.stderr
    assert f"written to {report}" in cli.stdout
    body = json.loads(report.read_text())["body"]
    assert body["verdict"] == "inside-policy" and body["totals"]["objects"] == 4
    assert {p["policy"]: p["verdict"] for p in body["policies"]} == {"france-only": "inside-policy",
                                                                     "eu-wide": "inside-policy"}
    assert sorted(n["id"] for n in body["nodes"] if n["answered"]) == sorted(s.name for s in SITES)
    page_text = page.read_text()
    assert "Verdict: inside-policy" in page_text
    for name in ("scans", "public", "secret.bin", "shared.bin"):   # no bucket or key name leaves
        assert name not in report.read_text() and name not in page_text
    auditor = _auditor_copy(mesh, report, tmp_path / "auditor")
    ok = _verify_offline(auditor, "report.json")
    assert ok.returncode == 0, ok.stderr
    assert "valid: signed by this cluster's key sha256:" in ok.stdout and "verdict: inside-policy" in ok.stdout
    rendered = _verify_offline(auditor, "report.json", action="render", extra=("--html", "page.html"))
    assert rendered.returncode == 0 and (auditor / "page.html").read_text() == page_text
    data = bytearray((auditor / "report.json").read_bytes())
    data[len(data) // 2] ^= 0x01
    (auditor / "altered.json").write_bytes(bytes(data))
    bad = _verify_offline(auditor, "altered.json")
    assert bad.returncode == 1 and "REFUSED" in bad.stderr and "Traceback" not in bad.stderr
    (auditor / "truncated.json").write_bytes(bytes(data[:100]))
    cut = _verify_offline(auditor, "truncated.json")
    assert cut.returncode == 1 and "malformed report" in cut.stderr and "Traceback" not in cut.stderr


def test_a_report_needs_the_clusters_signing_key(mesh, tmp_path):
    report = tmp_path / "report.json"
    unsigned = _run_cli("audit", "--report", str(report), "--signing-key", str(tmp_path / "absent.key"), mesh=mesh)
    assert unsigned.returncode == 1 and "cannot sign the report" in unsigned.stderr
    assert "Traceback" not in unsigned.stderr and not report.exists()
    public_only = tmp_path / "layout-signing.pub"                  # a public key is no signing key
    shutil.copyfile(mesh.cluster_dir / "layout-signing.pub", public_only)
    wrong = _run_cli("audit", "--report", str(report), "--signing-key", str(public_only), mesh=mesh)
    assert wrong.returncode == 1 and "cannot sign the report" in wrong.stderr and not report.exists()
    lone = _run_cli("audit", "--html", str(tmp_path / "page.html"), mesh=mesh)
    assert lone.returncode == 1 and "--html needs --report" in lone.stderr


def _auditor_copy(mesh, report, directory):
    """What an auditor keeps: the report and the cluster's public key (from a node's trust dir)."""
    directory.mkdir()
    shutil.copyfile(report, directory / "report.json")
    shutil.copyfile(mesh.trust_dir("paris-1") / "layout-signing.pub", directory / "cluster.pub")
    return directory


def _verify_offline(directory, name: str, *, action: str = "verify", extra=()) -> subprocess.CompletedProcess:
    """`maillage audit verify|render` with no profile, no endpoint and, where the kernel lets an
    unprivileged user have one, in a network namespace with no interface up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env["MAILLAGE_CONFIG_FILE"] = str(directory / "no-config")
    isolate = ["unshare", "-rn"] if shutil.which("unshare") and subprocess.run(
        ["unshare", "-rn", "true"], capture_output=True).returncode == 0 else []
    return subprocess.run([*isolate, sys.executable, "-m", "maillage.cli", "audit", action, name,
                           "--cluster-public", "cluster.pub", *extra], capture_output=True, text=True,
                          timeout=60, env=env, cwd=directory)


def test_planted_french_chunk_in_germany_is_a_violation(mesh, tmp_path):
    digest = _digests(mesh, "scans", "secret.bin")[0]
    munich = ChunkStore(mesh.data_dir("munich-1") / "chunks")
    target = munich.path_of(digest)
    assert not target.exists()
    source = next(p for n in ("paris-1", "toulouse-1", "lyon-1")
                  if (p := ChunkStore(mesh.data_dir(n) / "chunks").path_of(digest)).exists())
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    try:
        report = collect_audit(_admin(mesh, "toulouse-1"))
        assert not report.ok and not report.fully_replicated
        assert len(report.violations) == 1
        sentence = report.violations[0]
        assert digest.hex()[:16] in sentence
        for part in ("bucket scans", "policy france-only", "munich-1", "eu/de/bayern", "outside eu/fr"):
            assert part in sentence
        cli = _run_cli("audit", "--endpoint", mesh.address("lyon-1"), "--json", "--report",
                       str(tmp_path / "report.json"), mesh=mesh)
        assert cli.returncode == 1
        assert json.loads(cli.stdout)["violations"] == [sentence]
        # the signed report says so, by policy, node, site and chunk prefix, and still verifies
        auditor = _auditor_copy(mesh, tmp_path / "report.json", tmp_path / "auditor")
        checked = _verify_offline(auditor, "report.json")
        assert checked.returncode == 0, checked.stderr
        assert "verdict: violation" in checked.stdout
        body = json.loads((auditor / "report.json").read_text())["body"]
        assert body["verdict"] == "violation" and body["totals"]["violations"] == 1
        assert body["violations"] == [{"kind": "chunk", "policies": ["france-only"], "nodes": ["munich-1"],
                                       "sites": ["munich-1"], "locations": ["eu/de/bayern"], "count": 1,
                                       "digests": [digest.hex()[:16]]}]
        assert {p["policy"]: p["verdict"] for p in body["policies"]}["france-only"] == "violation"
        assert "scans" not in (auditor / "report.json").read_text()
    finally:
        target.unlink()
    assert collect_audit(_admin(mesh, "paris-1")).ok


def test_dead_node_is_unreachable_not_a_violation(mesh, tmp_path):
    cli = _run_cli("audit", "--require-full", env={"MAILLAGE_ENDPOINT": mesh.address("munich-1")}, mesh=mesh)
    assert cli.returncode == 0, cli.stderr
    assert "violations        0" in cli.stdout and "fully replicated" in cli.stdout
    mesh.kill("lyon-1")
    try:
        report = collect_audit(_admin(mesh, "paris-1"), timeout=3)
        assert report.unreachable == ["lyon-1"]
        assert report.ok and not report.fully_replicated
        plain = _run_cli("audit", "--endpoint", mesh.address("paris-1"), "--timeout", "3", "--report",
                         str(tmp_path / "report.json"), mesh=mesh)
        full = _run_cli("audit", "--endpoint", mesh.address("paris-1"), "--timeout", "3", "--require-full",
                        mesh=mesh)
        assert plain.returncode == 0 and "unreachable       lyon-1" in plain.stdout
        body = json.loads((tmp_path / "report.json").read_text())["body"]   # a silent node proves nothing
        assert body["verdict"] == "inside-policy-incomplete"
        assert {p["verdict"] for p in body["policies"]} == {"inside-policy-incomplete"}
        assert [n["id"] for n in body["nodes"] if not n["answered"]] == ["lyon-1"]
        assert full.returncode == 1
    finally:
        mesh.start_node("lyon-1")


def test_no_endpoint_answers_is_a_typed_error(mesh):
    from maillage.testing.localmesh import free_port
    nobody = dataclasses.replace(mesh.admin_profile, endpoints=(f"127.0.0.1:{free_port()}",))
    with pytest.raises(AuditError, match="cannot read the layout"):
        collect_audit(nobody, timeout=2)
    cli = _run_cli("audit", "--endpoint", "nonsense", mesh=mesh)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr and "bad endpoint" in cli.stderr


def _run_cli(*argv: str, mesh, env: dict | None = None) -> subprocess.CompletedProcess:
    """`maillage ARGV` with the mesh's admin profile (the audit needs an admin key)."""
    full_env = {k: v for k, v in os.environ.items() if k != "MAILLAGE_ENDPOINT"}
    full_env.update(MAILLAGE_CONFIG_FILE=str(mesh.config_file), MAILLAGE_PROFILE="admin")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "maillage.cli", *argv], capture_output=True, text=True,
                          timeout=120, env=full_env)


# ----- the pure judgement ----------------------------------------------------------------------

LAYOUT = make_layout(SITES, POLICIES)
FR, DE = b"\x01" * 32, b"\x02" * 32


def _inv(node: str, keys=None, chunks=(), refs=None) -> Inventory:
    return Inventory(node, {b: set(k) for b, k in (keys or {}).items()}, set(chunks),
                     {b: set(d) for b, d in (refs or {}).items()})


BUCKETS = {"scans": "france-only", "public": "eu-wide"}


def test_chunk_shared_with_a_wider_policy_may_rest_outside_the_narrow_one():
    inventories = {
        "paris-1": _inv("paris-1", {"scans": ["a"]}, [FR], {"scans": [FR]}),
        "lyon-1": _inv("lyon-1", {"scans": ["a"]}, [FR]),
        "munich-1": _inv("munich-1", {"public": ["b"]}, [FR], {"public": [FR]}),
        "toulouse-1": _inv("toulouse-1", {"public": ["b"]}),
    }
    report = evaluate(LAYOUT, inventories, [], BUCKETS, 2)
    assert report.violations == [] and report.under_replicated == 0
    # without the EU-wide reference the same copy in Germany is a violation
    inventories["munich-1"] = _inv("munich-1", {"public": ["b"]}, [FR])
    report = evaluate(LAYOUT, inventories, [], BUCKETS, 2, {FR: {"scans"}})
    assert len(report.violations) == 1 and "munich-1" in report.violations[0]
    # the FR chunk still has its two French sites: the stray copy adds nothing to replication
    assert report.under_replicated == 0


def test_keys_outside_policy_unknown_policies_orphans_and_under_replication():
    inventories = {
        "paris-1": _inv("paris-1", {"scans": ["a"]}, [FR, DE]),
        "munich-1": _inv("munich-1", {"scans": ["a"], "ghost": ["x"]}),
    }
    report = evaluate(LAYOUT, inventories, ["lyon-1"], BUCKETS, 1, {FR: {"scans"}})
    assert report.violations == [
        "key a of bucket scans (policy france-only) is on munich-1 at eu/de/bayern, outside eu/fr"]
    assert report.under_replicated == 2             # key a and chunk FR: one French site each
    assert report.unreferenced_chunks == 1          # DE: no manifest references it
    assert report.unknown_buckets == ["ghost"]
    assert report.unreachable == ["lyon-1"] and not report.fully_replicated
    gone = evaluate(LAYOUT, inventories, [], {"scans": "retired"}, 1, {FR: {"scans"}})
    assert any("unknown to layout" in v and "paris-1" in v for v in gone.violations)
    # a referenced chunk stored nowhere is under-replicated too
    assert evaluate(LAYOUT, {}, [], BUCKETS, 1, {FR: {"scans"}}).under_replicated == 1


def test_a_copy_missing_from_the_backbone_is_under_replicated_even_on_enough_sites():
    # France-only with one copy on the French backbone (paris-1): two edge copies are not enough.
    layout = dataclasses.replace(
        LAYOUT,
        sites=tuple(dataclasses.replace(s, tier="backbone") if s.name == "paris-1" else s for s in LAYOUT.sites),
        policies=tuple(dataclasses.replace(p, backbone=1) if p.name == "france-only" else p for p in LAYOUT.policies))
    on_edges = {"lyon-1": _inv("lyon-1", {"scans": ["a"]}, [FR], {"scans": [FR]}),
                "toulouse-1": _inv("toulouse-1", {"scans": ["a"]}, [FR])}
    report = evaluate(layout, on_edges, [], BUCKETS, 1)
    assert report.violations == [] and report.under_replicated == 2 and report.off_tier == 2
    assert not report.fully_replicated
    assert evaluate(LAYOUT, on_edges, [], BUCKETS, 1).under_replicated == 0   # no tier rule: enough
    on_backbone = {**on_edges, "paris-1": _inv("paris-1", {"scans": ["a"]}, [FR])}
    report = evaluate(layout, on_backbone, [], BUCKETS, 1)
    assert report.under_replicated == report.off_tier == 0 and report.fully_replicated


def test_a_chunk_moved_to_a_cold_policy_is_judged_by_its_rule_too():
    # France-only moves cold objects to france-cold (both copies on the French backbone: paris-1, lyon-1).
    backbone = {"paris-1", "lyon-1"}
    cold = Policy("france-cold", (("eu", "fr"),), replicas=2, backbone=2)
    layout = dataclasses.replace(
        LAYOUT,
        sites=tuple(dataclasses.replace(s, tier="backbone") if s.name in backbone else s for s in LAYOUT.sites),
        policies=tuple(dataclasses.replace(p, cold="france-cold") if p.name == "france-only" else p
                       for p in LAYOUT.policies) + (cold,))
    one_on_the_edge = {"paris-1": _inv("paris-1", {"scans": ["a"]}, [FR], {"scans": [FR]}),
                       "toulouse-1": _inv("toulouse-1", {"scans": ["a"]}, [FR])}
    moved = {FR: {("scans", "france-cold")}}
    assert evaluate(layout, one_on_the_edge, [], BUCKETS, 1).fully_replicated   # France-only's rule alone
    report = evaluate(layout, one_on_the_edge, [], BUCKETS, 1, rests=moved)
    assert report.violations == [] and report.under_replicated == report.off_tier == 1
    both_on_the_backbone = {**one_on_the_edge, "toulouse-1": _inv("toulouse-1", {"scans": ["a"]}, []),
                            "lyon-1": _inv("lyon-1", {}, [FR])}
    assert evaluate(layout, both_on_the_backbone, [], BUCKETS, 1, rests=moved).fully_replicated
    wider = evaluate(layout, both_on_the_backbone, [], BUCKETS, 1, rests={FR: {("scans", "eu-wide")}})
    assert wider.violations and "allows locations" in wider.violations[0]   # a forged manifest's name
