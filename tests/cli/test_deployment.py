"""The multi-machine deployment path, command by command, with real processes (as README tells it).

Admin machine: `cluster init`, one `cluster node-cert` per node, `layout sign` of a hand-written
layout.toml; each "machine": `node run --trust-dir --layout`; then, with the admin profile,
`status`, `tenant create`, `key create` and the tenant's profile moving an object. Every step is the
`maillage` command itself, in its own process, with nothing but files passed between steps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from maillage.testing import eventually
from maillage.testing.localmesh import free_ports

SITES = (("paris-1", "eu/fr/idf"), ("toulouse-1", "eu/fr/occitanie"), ("munich-1", "eu/de/bayern"))


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    full["MAILLAGE_CONFIG_FILE"] = os.devnull
    full.update(env or {})
    r = subprocess.run([sys.executable, "-m", "maillage.cli", *args], cwd=cwd, env=full, capture_output=True,
                       text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"maillage {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return r


def layout_toml(addresses: dict[str, str]) -> str:
    sites = "".join(f'[[sites]]\nname = "{name}"\nlocation = "{loc}"\n\n' for name, loc in SITES)
    nodes = "".join(f'[[nodes]]\nid = "{name}"\naddress = "{addresses[name]}"\nsite = "{name}"\n'
                    f'capacity = "1TB"\n\n' for name, _ in SITES)
    policy = '[[policies]]\nname = "eu-wide"\nallow = ["eu"]\nreplicas = 2\n'
    return f"version = 1\npartition_bits = 6\n\n{sites}{nodes}{policy}"


def test_a_new_mesh_from_the_command_line(tmp_path: Path):
    admin_dir = tmp_path / "admin"
    admin_dir.mkdir()
    # 1. the cluster's trust, on the admin machine
    out = run("cluster", "init", "cluster", "--name", "city", cwd=admin_dir).stdout
    assert "admin.conf" in out and "maillage cluster node-cert" in out
    cluster = admin_dir / "cluster"
    # 2. one trust dir per node, copied to its machine
    machines = {name: tmp_path / name for name, _ in SITES}
    for name, machine in machines.items():
        machine.mkdir()
        run("cluster", "node-cert", name, "--cluster-dir", str(cluster), "--out", str(machine / "trust"),
            cwd=admin_dir)
        assert not (machine / "trust" / "ca.key").exists() and not (machine / "trust" / "layout-signing.key").exists()
    # 3. the first layout, signed
    ports = free_ports(len(SITES))
    addresses = {name: f"127.0.0.1:{port}" for (name, _), port in zip(SITES, ports)}
    (admin_dir / "layout.toml").write_text(layout_toml(addresses))
    run("layout", "sign", "layout.toml", "--cluster-dir", str(cluster), "--out", "layout.signed", cwd=admin_dir)
    # 4. each node on its machine
    procs = []
    try:
        for name, machine in machines.items():
            (machine / "layout.signed").write_bytes((admin_dir / "layout.signed").read_bytes())
            log = open(machine / "node.log", "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "maillage.cli", "node", "run", "--id", name, "--data-dir", "data",
                 "--trust-dir", "trust", "--layout", "layout.signed"],
                cwd=machine, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            log.close()
        # 5. the admin's profile: status until every node answers
        admin = {"MAILLAGE_CONFIG_FILE": str(cluster / "admin.conf"), "MAILLAGE_CLUSTER_DIR": str(cluster),
                 "MAILLAGE_ENDPOINT": addresses["paris-1"]}
        def every_node_answers() -> bool:
            status = run("status", cwd=admin_dir, env=admin, check=False)
            assert status.returncode == 0, status.stdout + status.stderr + "".join(
                (m / "node.log").read_text() for m in machines.values())
            return True
        eventually(every_node_answers, timeout=30, what="every node answering `maillage status`",
                   retry_on=(AssertionError,))
        run("tenant", "create", "hospital", cwd=admin_dir, env=admin)
        made = run("key", "create", "--tenant", "hospital", cwd=admin_dir, env=admin).stdout
        # a user gets a client trust dir (no private cluster key) and the printed profile
        user_dir = tmp_path / "user"
        run("cluster", "client-trust", "--cluster-dir", str(cluster), "--out", str(user_dir / "trust"),
            cwd=admin_dir)
        profile = made[made.index("[profile hospital]"):made.index("\nthen")]
        profile = "\n".join(f"trust_dir = {user_dir / 'trust'}" if line.startswith("trust_dir") else line
                            for line in profile.splitlines())
        (user_dir / "config").write_text(profile + "\n")
        user = {"MAILLAGE_CONFIG_FILE": str(user_dir / "config"), "MAILLAGE_PROFILE": "hospital"}
        run("mb", "scans", "--policy", "eu-wide", cwd=user_dir, env=user)
        (user_dir / "scan.bin").write_bytes(os.urandom(300_000))
        run("cp", "scan.bin", "mesh://scans/2026/scan.bin", cwd=user_dir, env=user)
        run("cp", "mesh://scans/2026/scan.bin", "back.bin", cwd=user_dir, env=user)
        assert (user_dir / "back.bin").read_bytes() == (user_dir / "scan.bin").read_bytes()
        # the tenant's key is not an admin key; the admin's audit sees the tenant's data
        denied = run("status", cwd=user_dir, env=user, check=False)
        assert denied.returncode == 1 and "PermissionDenied" in denied.stderr
        audit = run("audit", "--require-full", cwd=admin_dir, env=admin, check=False)
        assert "violations        0" in audit.stdout and "1 bucket(s)" in audit.stdout
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
