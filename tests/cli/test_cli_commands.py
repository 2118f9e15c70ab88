"""The `maillage` shell commands against a real 3-site mesh, each command run as its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

SITES = (SiteSpec("paris-1", "eu/fr/idf"), SiteSpec("toulouse-1", "eu/fr/occitanie"),
         SiteSpec("munich-1", "eu/de/bayern"))
FRENCH = {"paris-1", "toulouse-1"}


@pytest.fixture(scope="module")
def mesh():
    with LocalMesh(make_layout(sites=SITES)) as m:
        yield m


def maillage(*args: str, endpoint: str | None = None, env_endpoint: str | None = None, stdin: bytes | None = None,
             timeout: float = 60, config: Path | None = None) -> subprocess.CompletedProcess:
    """`maillage ARGS` as its own process; `config`: the profile file to use (a mesh's maillage.conf)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env["MAILLAGE_CONFIG_FILE"] = str(config) if config is not None else os.devnull
    if env_endpoint is not None:
        env["MAILLAGE_ENDPOINT"] = env_endpoint
    argv = [sys.executable, "-m", "maillage.cli", *args]
    if endpoint:
        argv += ["--endpoint", endpoint]
    r = subprocess.run(argv, env=env, input=stdin, capture_output=True, timeout=timeout)
    r.out, r.err = r.stdout.decode(), r.stderr.decode()
    return r


def assert_one_line_error(r, *needles: str) -> None:
    assert r.returncode == 1, (r.out, r.err)
    assert "Traceback" not in r.err, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maillage: "), r.err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_mb_cp_ls_where_rm_round_trip(mesh, tmp_path: Path):
    def m(*args, **kwargs):
        return maillage(*args, config=mesh.config_file, **kwargs)

    env = ",".join(mesh.addresses)
    one = mesh.addresses[0]

    r = m("mb", "scans-fr", "--policy", "france-only", env_endpoint=env)
    assert r.returncode == 0, r.err
    assert "scans-fr" in r.out and "eu/fr" in r.out

    r = m("ls", endpoint=one)
    assert r.returncode == 0, r.err
    assert "scans-fr" in r.out and "france-only" in r.out

    big = tmp_path / "big.bin"
    data = os.urandom(9 * 1024 * 1024 + 123)             # 3 chunks; above the progress threshold
    big.write_bytes(data)
    r = m("cp", str(big), "mesh://scans-fr/2026/big.bin", env_endpoint=env)
    assert r.returncode == 0, r.err
    assert "uploaded mesh://scans-fr/2026/big.bin" in r.out
    assert "100.0%" in r.err and "MB/s" in r.err          # progress on stderr
    small = tmp_path / "note.txt"
    small.write_text("bonjour\n")
    r = m("cp", str(small), "mesh://scans-fr/2026/", endpoint=one)   # trailing '/': keep name
    assert r.returncode == 0, r.err
    assert "MB/s" not in r.err                            # no progress for a small file

    r = m("ls", "scans-fr", endpoint=one)
    assert r.returncode == 0, r.err
    assert "PRE" in r.out and "2026/" in r.out and "big.bin" not in r.out
    r = m("ls", "mesh://scans-fr/2026/", endpoint=one)
    assert r.returncode == 0, r.err
    assert "2026/big.bin" in r.out and "2026/note.txt" in r.out and "9.0 MiB" in r.out
    r = m("ls", "scans-fr", "--recursive", endpoint=one)
    assert [line.split()[-1] for line in r.out.splitlines()] == ["2026/big.bin", "2026/note.txt"]

    back = tmp_path / "back.bin"
    r = m("cp", "mesh://scans-fr/2026/big.bin", str(back), env_endpoint=env)
    assert r.returncode == 0, r.err
    assert back.read_bytes() == data
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = m("cp", "mesh://scans-fr/2026/note.txt", str(outdir), endpoint=one)
    assert r.returncode == 0, r.err
    assert (outdir / "note.txt").read_text() == "bonjour\n"
    r = m("cp", "mesh://scans-fr/2026/note.txt", "-", endpoint=one)
    assert r.returncode == 0 and r.stdout == b"bonjour\n"

    r = m("where", "scans-fr", "2026/big.bin", endpoint=one)
    assert r.returncode == 0, r.err
    assert "france-only" in r.out and "eu/fr" in r.out and "partition" in r.out
    r = m("where", "scans-fr", "2026/big.bin", "--json", endpoint=one)
    assert r.returncode == 0, r.err
    doc = json.loads(r.out)
    assert doc["policy"] == "france-only" and doc["allow"] == ["eu/fr"] and doc["replicas_required"] == 2
    assert 0 <= doc["partition"] < doc["partitions"]
    assert {rep["site"] for rep in doc["index_replicas"]} == FRENCH
    assert doc["exists"] and len(doc["chunks"]) == 3
    for chunk in doc["chunks"]:
        assert {rep["site"] for rep in chunk["replicas"]} == FRENCH
        assert all(rep["location"].startswith("eu/fr/") for rep in chunk["replicas"])

    r = m("rm", "scans-fr", "2026/big.bin", endpoint=one)
    assert r.returncode == 0, r.err
    r = m("ls", "scans-fr", "-r", endpoint=one)
    assert "big.bin" not in r.out and "2026/note.txt" in r.out
    assert_one_line_error(m("rm", "scans-fr", "2026/big.bin", endpoint=one), "2026/big.bin")
    assert_one_line_error(m("cp", "mesh://scans-fr/2026/big.bin", str(tmp_path / "x"), endpoint=one))
    assert not (tmp_path / "x").exists()


def test_missing_bucket_is_a_one_line_error(mesh, tmp_path: Path):
    def m(*args, **kwargs):
        return maillage(*args, config=mesh.config_file, **kwargs)

    one = mesh.addresses[0]
    assert_one_line_error(m("ls", "no-such-bucket", endpoint=one), "no-such-bucket")
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert_one_line_error(m("cp", str(f), "mesh://no-such-bucket/f.txt", endpoint=one), "no-such-bucket")
    assert_one_line_error(m("where", "no-such-bucket", "k", endpoint=one), "no-such-bucket")
    assert_one_line_error(m("rm", "no-such-bucket", "k", endpoint=one), "no-such-bucket")
    assert_one_line_error(m("mb", "bad-policy", "--policy", "nowhere", endpoint=one), "nowhere")


def test_no_endpoint_is_a_clear_error(tmp_path: Path):
    r = maillage("ls")
    assert_one_line_error(r, "--endpoint", "MAILLAGE_ENDPOINT")
    assert_one_line_error(maillage("cp", "mesh://b/k", str(tmp_path / "k")), "MAILLAGE_ENDPOINT")
    assert_one_line_error(maillage("ls", env_endpoint="not-an-address"), "HOST:PORT")


def test_unreachable_endpoint_is_a_one_line_error(mesh):
    from maillage.testing.localmesh import free_port
    assert_one_line_error(maillage("ls", endpoint=f"127.0.0.1:{free_port()}", config=mesh.config_file),
                          "no endpoint answered")


def test_missing_or_wrong_credentials_are_one_line_errors(mesh, tmp_path: Path):
    one = mesh.addresses[0]
    assert_one_line_error(maillage("ls", endpoint=one), "access key", "MAILLAGE_ACCESS_KEY_ID", "trust dir")
    assert_one_line_error(maillage("ls", "--profile", "nobody", config=mesh.config_file), "nobody")
    wrong = tmp_path / "wrong.conf"
    wrong.write_text(mesh.config_file.read_text().replace(mesh.profile.credentials.secret, "x" * 40))
    assert_one_line_error(maillage("ls", config=wrong), "PermissionDenied")
    assert mesh.profile.credentials.secret not in wrong.read_text()
    # a tenant key cannot run admin commands
    assert_one_line_error(maillage("status", config=mesh.config_file), "PermissionDenied")


def test_tenant_and_key_commands(mesh, tmp_path: Path):
    def admin(*args):
        env_dir = str(mesh.cluster_dir)
        return maillage(*args, "--profile", "admin", "--cluster-dir", env_dir, config=mesh.config_file)

    r = admin("tenant", "create", "hospital")
    assert r.returncode == 0, r.err
    r = admin("key", "create", "--tenant", "hospital")
    assert r.returncode == 0, r.err
    key_id = next(line.split()[-1] for line in r.out.splitlines() if "access key id" in line)
    secret = next(line.split()[-1] for line in r.out.splitlines() if "secret access key" in line)
    conf = tmp_path / "hospital.conf"
    conf.write_text(r.out[r.out.index("[profile hospital]"):r.out.index("\nthen")])
    hospital = ("--profile", "hospital")
    r = maillage("mb", "hospital-scans", "--policy", "france-only", *hospital, config=conf)
    assert r.returncode == 0, r.err
    r = maillage("ls", *hospital, config=conf)
    assert "hospital-scans" in r.out and "scans-fr" not in r.out          # a tenant sees its buckets only
    r = maillage("ls", config=mesh.config_file)
    assert "hospital-scans" not in r.out
    assert_one_line_error(maillage("ls", "hospital-scans", config=mesh.config_file), "PermissionDenied")

    r = admin("key", "list", "--tenant", "hospital")
    assert r.returncode == 0 and key_id in r.out and secret not in r.out
    r = admin("tenant", "list")
    assert r.returncode == 0 and "hospital" in r.out and "demo" in r.out
    assert_one_line_error(admin("tenant", "delete", "hospital"), "hospital-scans")
    r = admin("key", "revoke", key_id)
    assert r.returncode == 0, r.err
    assert_one_line_error(maillage("ls", *hospital, config=conf), "PermissionDenied")
    assert "revoked" in admin("key", "list").out


def test_cp_needs_exactly_one_mesh_side(tmp_path: Path):
    assert_one_line_error(maillage("cp", "a", "b", endpoint="127.0.0.1:1"), "mesh://")
    assert_one_line_error(maillage("cp", "mesh://a/b", "mesh://c/d", endpoint="127.0.0.1:1"), "mesh://")


def test_help_explains_every_command():
    for cmd in ("demo", "where", "mb", "ls", "cp", "rm", "tenant", "key", "cluster", "status", "audit", "energy"):
        r = maillage(cmd, "--help")
        assert r.returncode == 0 and "usage: maillage " + cmd in r.out, r.err
        if cmd not in ("demo", "cluster"):
            assert "MAILLAGE_ENDPOINT" in r.out


def test_energy_reports_every_site_and_a_node_that_does_not_answer(mesh):
    """Last in the file: it stops a node of the shared mesh (and starts it again)."""
    def energy(*args):
        return maillage("energy", "--profile", "admin", *args, config=mesh.config_file)

    r = energy()
    assert r.returncode == 0, r.err
    assert r.out.splitlines()[0].split()[:3] == ["SITE", "NODES", "STATE"]
    for spec in SITES:  # no site of this mesh declares a source: unknown, work runs as before
        assert any(line.startswith(spec.name) and " unknown " in line for line in r.out.splitlines()), r.out
    assert "mesh: 3 site(s) (3 unknown), 3/3 node(s) answered" in r.out
    report = json.loads(energy("--json").out)
    assert {s["site"] for s in report["sites"]} == {s.name for s in SITES}
    assert all(s["sources"] == ["none"] and s["green_share"] is None for s in report["sites"])
    mesh.kill("munich-1")
    try:
        r = energy("--timeout", "2")
        assert r.returncode == 0, r.err  # the others answered: a report, with the silent node in it
        munich = next(line for line in r.out.splitlines() if line.startswith("munich-1"))
        assert "0/1" in munich and "unreachable" in munich
        assert "2/3 node(s) answered" in r.out
    finally:
        mesh.start_node("munich-1")
