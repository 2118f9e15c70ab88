"""The benchmark harness cannot rot: a tiny `maillage bench --quick` on real node processes.

Runs every part (limits, throughput, repair, placement) at toy sizes through the real command
line, then checks the JSON holds the expected figures with sane values and that the ratios to
the machine's limits were computed. Figures are not judged against targets here: on a shared
2-core machine they vary, and the targets are benchmark figures, not tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(180)


def test_quick_bench_writes_figures(tmp_path):
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "maillage.cli", "bench", "--quick", "--out", str(out),
            "--tmp-dir", str(tmp_path), "--sizes", "4K,256K", "--concurrency", "1,2", "--seconds", "0.4",
            "--data", "8MiB", "--repair-timeout", "20", "--placement-sites", "10", "--placement-bits", "10",
            "--disk", "16MiB"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=170, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[" in proc.stderr and " s] throughput: PUT 4 KiB c=1" in proc.stderr  # one line per step
    assert "targets:" in proc.stdout

    result = json.loads((out / "results.json").read_text())
    assert result["errors"] == {}
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["ram_bytes"] > 0 and machine["python"]
    assert machine["packages"]["grpcio"]

    limits = result["limits"]
    for name in ("disk_write_fsync", "disk_read_cold", "blake3", "zstd_random", "zstd_text", "loopback_tcp"):
        assert limits[name]["mb_per_s"] > 0, name
    assert limits["zstd_random"]["level"] >= 1

    tp = result["throughput"]
    rows = tp["rows"]
    assert {(r["op"], r["size"], r["concurrency"]) for r in rows} == {
        (op, size, c) for op in ("put", "get") for size in (4096, 256 * 1024) for c in (1, 2)}
    for r in rows:
        assert r["ops"] > 0 and r["ops_per_s"] > 0 and r["mb_per_s"] > 0, r
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"], r
        assert r["client_cpu_s"] >= 0 and r["ratio_to_limit"] > 0 and r["limit_mb_per_s"] > 0, r
        assert set(r["peak_rss"]) >= {"site-a", "site-b", "site-c", "client"}, r
    assert all(v > 10e6 for v in tp["idle_rss"].values())

    (repair,) = result["repair"]
    assert repair["victim_bytes"] > 0 and repair["series"] and repair["bound_s"] > 0
    if repair["converged"]:
        assert repair["seconds"] > 0 and repair["mb_per_s"] > 0 and repair["ratio_to_disk_write"] > 0
    else:
        assert "did not converge within 20 s" in repair["note"]

    (placement,) = result["placement"]
    assert placement["sites"] == 10 and placement["max_mean"] >= 1.0 and placement["build_s"] > 0

    assert result["targets"] and all(isinstance(t["met"], bool) for t in result["targets"])
    md = (out / "results.md").read_text()
    assert "## Throughput" in md and "## Repair of a wiped node" in md and "## Limits" in md
    for name in ("throughput.png", "latency.png", "repair.png"):  # matplotlib is a dependency: always drawn
        assert (out / name).stat().st_size > 1000, name
    assert not list(tmp_path.glob("maillage-bench-*")), "mesh temp dirs left behind"
