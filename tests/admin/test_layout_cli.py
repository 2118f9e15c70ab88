"""`maillage layout ...` against a real mesh: stage, show, refuse, apply, revert; one-line errors."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import pytest

from maillage.cli.main import main
from maillage.client import Client
from maillage.client._trust import unary_method
from maillage.client.admin import collect_audit, read_node_keys
from maillage.placement import NodeState, parse_layout
from maillage.proto import pb
from maillage.proto.channels import open_blocking_channel
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import TlsIdentity, create_cluster
from maillage.testing.localmesh import LocalMesh, free_port, make_layout

from .conftest import POLICIES, SITES


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("layout")) as m:
        with Client(profile=m.profile) as client:
            client.create_bucket("scans", policy="france-only")
            for i in range(5):
                client.put_object("scans", f"k{i}", os.urandom(100_000))
        yield m


@contextmanager
def _env(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(capsys, mesh, *argv, cluster="mesh") -> tuple[int, str, str]:
    """`maillage ARGV` in this process against `mesh` with its admin profile and, unless told
    otherwise, its cluster dir: (exit code, stdout, stderr)."""
    cluster_dir = str(mesh.cluster_dir) if cluster == "mesh" else cluster
    capsys.readouterr()
    with _env(MAILLAGE_ENDPOINT=mesh.address("paris-1"), MAILLAGE_CONFIG_FILE=str(mesh.config_file),
              MAILLAGE_PROFILE="admin", MAILLAGE_CLUSTER_DIR=cluster_dir):
        with pytest.raises(SystemExit) as exit_:
            main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return exit_.value.code, out, err


def applied(mesh, address: str):
    key = mesh.profile.credentials
    with open_blocking_channel(address, tls=TlsIdentity.load_client(mesh.cluster_dir)) as channel:
        body = pb.GetLayoutRequest().SerializeToString()   # any node: GetLayout is cluster-wide
        doc = unary_method(channel, "Cluster", "GetLayout")(
            body, timeout=10, metadata=requestauth.sign("/maillage.v1.Cluster/GetLayout", key.key_id, key.secret,
                                                        target=requestauth.ANY_NODE, body=body))
        return parse_layout(doc.text)


def test_stage_refuse_revert_apply(capsys, mesh, tmp_path):
    code, out, _ = run(capsys, mesh, "layout", "show", "--json")
    assert code == 0 and json.loads(out)["version"] == 1 and len(json.loads(out)["nodes"]) == 4

    code, _, err = run(capsys, mesh, "layout", "drain", "lyon-1", cluster=None)
    assert code == 1 and "no cluster dir" in err
    stranger = create_cluster(tmp_path / "other", "stranger").directory
    code, _, err = run(capsys, mesh, "layout", "drain", "lyon-1", cluster=str(stranger))
    assert code == 1 and "signature" in err and err.count("\n") == 1

    # stage one drain: what would move is shown, nothing is applied yet
    code, out, _ = run(capsys, mesh, "layout", "drain", "lyon-1")
    assert code == 0 and "staged: drain lyon-1" in out
    assert "france-only" in out and "data moved" in out
    assert applied(mesh, mesh.address("munich-1")).node("lyon-1").state is NodeState.ACTIVE
    code, out, _ = run(capsys, mesh, "layout", "show", "--staged", "--json")
    doc = json.loads(out)
    assert doc["base_version"] == 1 and doc["diff"] == ["~ node lyon-1: state active -> draining"]
    france = next(m for m in doc["movement"] if m["policy"] == "france-only")
    assert france["changed"] > 0 and france["lost"]["lyon-1"] > 0

    # a second drain would leave France with one site: staged with a warning, apply refuses
    code, _, err = run(capsys, mesh, "layout", "drain", "toulouse-1")
    assert code == 0 and "bucket scans" in err
    code, out, err = run(capsys, mesh, "layout", "apply", "--yes")
    assert code == 1 and "scans (policy france-only)" in err and "not applied" in err
    assert applied(mesh, mesh.address("paris-1")).version == 1

    code, out, _ = run(capsys, mesh, "layout", "revert")
    assert code == 0 and "discarded" in out and "toulouse-1" in out
    code, out, _ = run(capsys, mesh, "layout", "show", "--staged")
    assert "nothing is staged" in out

    # stage again, no confirmation on a non-terminal, then apply for real
    run(capsys, mesh, "layout", "drain", "lyon-1")
    code, _, err = run(capsys, mesh, "layout", "apply")
    assert code == 1 and "--yes" in err
    code, out, _ = run(capsys, mesh, "layout", "apply", "--yes")
    assert code == 0 and "applied layout v2" in out and "adopted by 4 of 4" in out
    for node in mesh.layout.nodes:
        layout = applied(mesh, node.address)
        assert layout.version == 2 and layout.node("lyon-1").state is NodeState.DRAINING
    code, out, _ = run(capsys, mesh, "layout", "show", "--staged")
    assert "nothing is staged" in out

    # grow by a site whose node is not running (the push to it fails: a warning), then retire it;
    # the layout pins every node's certificate key: the new node's certificate is issued first
    ghost = f"127.0.0.1:{free_port()}"
    assert run(capsys, mesh, "layout", "add-site", "nice-1", "--location", "eu/fr/paca")[0] == 0
    add_node = ("layout", "add-node", "nice-1", "--address", ghost, "--site", "nice-1", "--capacity", "4T")
    code, _, err = run(capsys, mesh, *add_node)
    assert code == 1 and "node-cert nice-1" in err
    code, out, _ = run(capsys, mesh, "cluster", "node-cert", "nice-1", "--out", str(tmp_path / "trust-nice-1"))
    assert code == 0 and "recorded its key sha256:" in out
    code, out, _ = run(capsys, mesh, *add_node)
    assert code == 0 and "+ node nice-1 on nice-1" in out and "key sha256:" in out
    code, out, err = run(capsys, mesh, "layout", "apply", "--yes")
    assert code == 0 and "applied layout v3" in out and ghost in err
    code, _, err = run(capsys, mesh, "layout", "remove", "nice-1")
    assert code == 1 and "drain 'nice-1' first" in err
    run(capsys, mesh, "layout", "drain", "nice-1")
    run(capsys, mesh, "layout", "remove", "nice-1")
    assert run(capsys, mesh, "layout", "apply", "--yes")[0] == 0
    final = applied(mesh, mesh.address("toulouse-1"))
    assert final.version == 4 and "nice-1" not in {s.name for s in final.sites}
    # moving data around never breaks residency
    assert collect_audit(mesh.admin_profile).ok

    # a rotation: a new certificate, whose key `layout pin` stages (apply would retire the old one)
    code, out, _ = run(capsys, mesh, "cluster", "node-cert", "munich-1", "--out", str(tmp_path / "trust-munich"))
    assert code == 0
    assert run(capsys, mesh, "layout", "pin")[0] == 0
    code, out, _ = run(capsys, mesh, "layout", "show", "--staged", "--json")
    doc = json.loads(out)
    assert [line.split(" sha256:")[0] for line in doc["diff"]] == ["~ node munich-1: cert_key"]
    staged = {n["id"]: n["cert_key"] for n in doc["staged"]["nodes"]}
    assert staged["munich-1"] == read_node_keys(mesh.cluster_dir)["munich-1"]
    assert run(capsys, mesh, "layout", "revert")[0] == 0


@pytest.mark.parametrize("argv, message", [
    (("layout", "add-node", "n9", "--address", "127.0.0.1:9", "--site", "paris-1", "--capacity", "4X"),
     "bad size"),
    (("layout", "set-capacity", "nobody", "4T"), "unknown node 'nobody'"),
    (("layout", "drain", "atlantis"), "no node or site named 'atlantis'"),
    (("layout", "add-site", "brest-1", "--location", "EU/FR"), "location"),
    (("layout", "add-node", "n9", "--address", "nohost", "--site", "paris-1", "--capacity", "1T"), "address"),
    (("layout", "add-node", "n9", "--address", "127.0.0.1:9", "--site", "mars", "--capacity", "1T"),
     "unknown site 'mars'"),
    (("layout", "policy-set", "new-policy"), "give at least one --allow"),
    (("layout", "policy-set", "p2", "--allow", "eu", "--replicas", "1"), "replicas"),
    (("layout", "policy-set", "p2", "--allow", "eu", "--backbone", "3"), "backbone: must be an integer in 0..2"),
    (("layout", "site-tier", "mars", "backbone"), "unknown site 'mars'"),
    (("layout", "policy-remove", "ghost"), "unknown policy 'ghost'"),
    (("layout", "apply", "--yes"), "nothing is staged"),
])
def test_bad_input_is_one_line(capsys, mesh, argv, message):
    code, _, err = run(capsys, mesh, *argv)
    assert code == 1 and message in err and err.startswith("maillage: ") and err.count("\n") == 1
