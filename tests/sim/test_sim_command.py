"""`maillage sim` in CI: a small mesh through every phase, its table sane, its run repeatable."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maillage.cli.main import main
from maillage.testing.sim import SimConfig, simulate
from maillage.testing.sim.report import COLUMNS, rows

SMALL = dict(seconds=3.0, loss=0.01, objects=6, down_after=10.0, repair_interval=5.0, news_cap=20.0)


def test_one_seed_one_run(tmp_path: Path) -> None:
    first = simulate(SimConfig(sites=8, seed=4, root=tmp_path, **SMALL))
    again = simulate(SimConfig(sites=8, seed=4, root=tmp_path, **SMALL))
    other = simulate(SimConfig(sites=8, seed=5, root=tmp_path, **SMALL))
    assert first.digest == again.digest
    assert first.per_second == again.per_second and first.calls == again.calls
    # every figure but the real CPU in handlers and the wall time
    assert [r[:3] + r[4:-1] for r in rows([first])] == [r[:3] + r[4:-1] for r in rows([again])]
    assert other.digest != first.digest


def test_sim_command_prints_a_sane_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svg = tmp_path / "sim.svg"
    with pytest.raises(SystemExit) as exited:
        main(["sim", "--sites", "10,14", "--seconds", "3", "--seed", "3", "--objects", "6",
              "--down-after", "10", "--repair-interval", "5", "--store-dir", str(tmp_path), "--out", str(svg)])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:3] == ["sites", "msgs/s/node", "bytes/s/node"]
    table = [line.split() for line in lines[2:4]]
    assert [row[0] for row in table] == ["10", "14"]
    assert all(len(row) == len(COLUMNS) for row in table)
    assert "messages/s per node (idle)" in out and "trace digests: 10=" in out
    assert svg.read_text().startswith("<svg") and "</svg>" in svg.read_text()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return simulate(SimConfig(sites=14, seed=2, root=tmp_path_factory.mktemp("sim"), **SMALL))


def test_figures_are_sane(small) -> None:  # type: ignore[no-untyped-def]
    r, n = small, 14
    # whatever the membership protocol: every node probes at least one peer a second, and a
    # message is more than a few bytes and less than a whole layout
    assert 1 <= r.msgs_per_node_s <= r.max_msgs_per_node_s < 200
    assert 10 * r.msgs_per_node_s < r.bytes_per_node_s < 100_000 * r.msgs_per_node_s
    # the crash is suspected, the documents adopted, by every live node within the news phase
    assert 0 < r.detect_p1 <= r.detect_p99 <= r.detect_all <= SMALL["news_cap"]
    assert 0 < r.layout_p1 <= r.layout_p99 <= r.layout_all <= SMALL["news_cap"]
    assert r.access_p99 <= r.access_all <= SMALL["news_cap"]
    # the crashed node's co-owners (the nodes sharing a partition with it) suspect it within about
    # a told probe and its ping-reqs of the first suspicion, which tells them (1.0-2.2 s over seeds
    # 2-5; 4.3-5.9 s before they were told, when they waited for the epidemic)
    assert r.holders > 0 and r.holders_all - r.detect_p1 <= 3.0
    assert set(r.fan_out) == {"create", "head", "list", "delete"}
    assert all(0 <= v < n for v in r.fan_out.values()) and r.fan_out["create"] > 0
    assert r.false_suspicions >= 0
    assert 0 <= r.stale_window < 30.0
    assert SMALL["down_after"] <= r.repair_convergence or r.repair_convergence < SMALL["repair_interval"] * 4
    assert not math.isinf(r.repair_convergence)
    assert r.calls["heartbeat"] > 0 and r.calls["sync_summaries"] > 0
    assert r.simulated > SMALL["seconds"] and sum(r.per_second) > 0


def test_one_seed_one_run_across_processes(tmp_path: Path) -> None:
    """Another process, another string-hash seed: the same trace (no set or dict order leaks in)."""
    digests = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", "from maillage.cli.main import main; main()", "sim",
                              "--sites", "8", "--seconds", "2", "--seed", "9", "--phases", "buckets,idle,news",
                              "--store-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=120, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
        digests.add(next(line for line in out.splitlines() if "trace digests" in line))
    assert len(digests) == 1


def test_sim_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sim", "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and "usage: maillage sim" in out
    for words in ("virtual", "seed", "--loss", "--phases", "fan-out", "repair"):
        assert words in out
