"""LocalMesh's start: what its node processes inherit, and never two processes of one node."""

from __future__ import annotations

import subprocess
import sys

import pytest

from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout, node_env


def test_nodes_keep_their_bytecode_outside_the_source_tree(monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    env = node_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"].startswith("/") and "maillage-pycache" in env["PYTHONPYCACHEPREFIX"]


def test_an_environment_writing_bytecode_is_left_as_it_is(monkeypatch):
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    assert "PYTHONPYCACHEPREFIX" not in node_env()
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", "/somewhere")
    assert node_env()["PYTHONDONTWRITEBYTECODE"] == "1"   # the caller chose where: untouched


def test_a_running_node_is_never_started_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILLAGE_PORT_REGISTRY", str(tmp_path / "ports.json"))
    mesh = LocalMesh(make_layout((SiteSpec("paris-1", "eu/fr/idf"),)), tmp_path / "mesh")
    stand_in = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        mesh.processes["paris-1"] = stand_in
        with pytest.raises(RuntimeError, match="already running"):
            mesh.start_node("paris-1", wait=False)
        assert mesh.processes["paris-1"] is stand_in   # still tracked, so close() ends it
    finally:
        mesh.close()
    assert stand_in.poll() is not None
