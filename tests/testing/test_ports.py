"""Ports for local meshes: never one another mesh, node or outgoing connection can be handed."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from maillage.testing.localmesh import SiteSpec, make_layout, start_timeout
from maillage.testing.ports import port_range, reserve_ports


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch):
    path = tmp_path / "ports.json"
    monkeypatch.setenv("MAILLAGE_PORT_REGISTRY", str(path))
    return path


def _ephemeral() -> range:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(v) for v in f.read().split())
    return range(low, high + 1)


def test_a_big_layout_has_distinct_ports_outside_the_ephemeral_range():
    layout = make_layout(tuple(SiteSpec(f"site-{i:03d}", "eu/fr/idf", nodes=2) for i in range(300)))
    ports = [int(n.address.rsplit(":", 1)[1]) for n in layout.nodes]
    assert len(ports) == 600 and len(set(ports)) == 600
    ephemeral = _ephemeral()
    assert not any(p in ephemeral for p in ports)  # no client socket's source port can take one


def test_layouts_made_one_after_the_other_never_share_a_port():
    """The old way (bind port 0, close) could hand a port back as soon as it was closed."""
    seen: set[int] = set()
    for _ in range(40):
        ports = reserve_ports(25)
        assert not seen & set(ports)
        seen |= set(ports)


def test_another_process_never_gets_a_reserved_port(registry):
    mine = set(reserve_ports(200))
    script = ("from maillage.testing.ports import reserve_ports; "
              "print(' '.join(map(str, reserve_ports(2000))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    theirs = {int(p) for p in out.stdout.split()}
    assert len(theirs) == 2000 and not mine & theirs


def test_a_reservation_lapses_when_its_process_ends(registry):
    script = "from maillage.testing.ports import reserve_ports; print(reserve_ports(1)[0])"
    gone = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True).stdout)
    assert str(gone) in registry.read_text()
    reserve_ports(1)  # any edit drops the entries of ended processes
    assert str(gone) not in registry.read_text()


def test_a_port_in_use_is_never_handed_out(monkeypatch):
    span = port_range()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", span.start))
        picks = iter([span.start, span.start + 1])

        class Fixed:
            def randrange(self, _a, _b):
                return next(picks)
        assert reserve_ports(1, rng=Fixed()) == [span.start + 1]  # type: ignore[arg-type]


def test_start_timeout_scales_with_the_mesh():
    assert start_timeout(12, window=8, per_node=30, slack=0) == 60
    assert start_timeout(100, window=8, per_node=30, slack=0) == 30 * 13
    assert start_timeout(1, window=8, per_node=30) == 30
    assert start_timeout(100, window=8, per_node=30, slack=0.25) == (30 + 0.25 * 99) * 13
