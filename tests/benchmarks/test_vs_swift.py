"""`maillage bench --vs-swift` without Swift: the table and its ratios, the peer's orchestration
against a fake harness (stop.sh runs whatever happens), and the one-line "not set up" message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maillage.benchmarks import report, vs_swift
from maillage.benchmarks.vs_swift import SwiftPeer, SwiftPeerError, SwiftPeerMissing

KIB, MIB = 1024, 1 << 20

# bench.py's JSON line, trimmed to what is read (two cells of 4 KiB, one of 64 MiB)
SWIFT_JSON = {"system": "openstack-swift", "summary": [
    {"op": "PUT", "size": "4KiB", "objects": 2000, "conc": 1, "runs": 1, "mib_s": 0.29, "ops_s": 75.0,
     "p50_ms": 12.0, "p99_ms": 20.0, "server_cores": 1.2},
    {"op": "GET", "size": "4KiB", "objects": 2000, "conc": 1, "runs": 1, "mib_s": 0.8, "ops_s": 200.0,
     "p50_ms": 4.0, "p99_ms": 7.0, "server_cores": 1.0},
    {"op": "PUT", "size": "64MiB", "objects": 8, "conc": 1, "runs": 1, "mib_s": 180.0, "ops_s": 2.8,
     "p50_ms": 300.0, "p99_ms": 400.0, "server_cores": 1.5},
]}
SWIFT_C32 = {"summary": [{"op": "PUT", "size": "4KiB", "objects": 2000, "conc": 32, "runs": 1, "mib_s": 0.4,
                          "ops_s": 110.0, "server_cores": 1.9}]}


def _row(op: str, size: int, c: int, ops_per_s: float, errors: int = 0) -> dict:
    """A throughput.measure row (the fields vs_swift reads), 2 s long."""
    return {"op": op, "size": size, "concurrency": c, "ops": int(ops_per_s * 2), "seconds": 2.0,
            "ops_per_s": ops_per_s, "mb_per_s": round(ops_per_s * size / 1e6, 2), "p50_ms": 1.0, "p99_ms": 2.0,
            "node_cpu_s": {"site-a": 0.5, "site-b": 0.25, "site-c": 0.25}, "errors": errors, "first_error": None}


MAILLAGE_ROWS = [_row("put", 4 * KIB, 1, 150.0), _row("get", 4 * KIB, 1, 250.0, errors=3),
                 _row("put", 64 * MIB, 1, 1.0), _row("put", 4 * KIB, 32, 1200.0), _row("get", 4 * KIB, 32, 900.0)]


def _comparison() -> dict:
    return vs_swift.compare(vs_swift.swift_cells([SWIFT_JSON, SWIFT_C32]), vs_swift.maillage_cells(MAILLAGE_ROWS),
                            disk_mb_per_s=400.0, replicas=2, target_concurrency=32)


def test_ratios_marks_and_order_of_the_table():
    table = {r["row"]: r for r in _comparison()["table"]}
    # by size, PUT before GET, then concurrency
    assert list(table) == ["PUT 4 KiB c1", "PUT 4 KiB c32", "GET 4 KiB c1", "GET 4 KiB c32", "PUT 64 MiB c1"]
    put = table["PUT 4 KiB c1"]
    assert put["swift_ops_per_s"] == 75.0 and put["maillage_ops_per_s"] == 150.0
    assert put["ratio"] == 2.0 and put["met"] is True and put["goal"] == 1.5
    assert table["GET 4 KiB c1"]["ratio"] == 1.25 and table["GET 4 KiB c1"]["met"] is False
    assert table["GET 4 KiB c1"]["maillage_errors"] == 3
    assert table["PUT 4 KiB c32"]["ratio"] == pytest.approx(1200 / 110, abs=1e-3)
    # a cell only one side measured has no ratio and no mark, never a fake pass
    assert table["GET 4 KiB c32"]["ratio"] is None and table["GET 4 KiB c32"]["met"] is None
    # server CPU per op: Swift cores / ops/s; maillage node CPU seconds / ops
    assert put["swift_cpu_ms_per_op"] == pytest.approx(1.2 / 75 * 1e3, abs=1e-3)
    assert put["maillage_cpu_ms_per_op"] == pytest.approx(1.0 / 300 * 1e3, abs=1e-3)


def test_absolute_targets_and_the_disk_fraction():
    targets = {t["target"]: t for t in _comparison()["targets"]}
    assert targets["4 KiB PUT c32 >= 1,000 ops/s"]["met"] is True
    assert targets["4 KiB GET c32 >= 2,500 ops/s"]["met"] is False
    (disk,) = [t for name, t in targets.items() if name.startswith("64 MiB PUT c1")]
    bound = 400.0 / 2
    assert disk["bound_mb_per_s"] == bound and disk["value"] == pytest.approx(64 * MIB / 1e6 / bound, abs=1e-3)
    assert disk["met"] is False  # 0.34 of the bound
    assert disk["swift_fraction"] == pytest.approx(180 * MIB / 1e6 / bound, abs=1e-3)


def test_format_table_prints_the_issue_table():
    text = vs_swift.format_table(_comparison())
    assert "| row | Swift ops/s | maillage ops/s | ratio | target |" in text
    assert "| PUT 4 KiB c1 | 75.0 | 150.0 | 2.00 | >= 1.5x | pass |" in text
    assert "| GET 4 KiB c1 | 200.0 | 250.0 | 1.25 | >= 1.5x | MISS (3 maillage errors) |" in text
    assert "| GET 4 KiB c32 | - | 900.0 | - | >= 1.5x | - |" in text
    assert "| 4 KiB GET c32 >= 2,500 ops/s | 900.0 ops/s | MISS |" in text
    assert "0.34 (67.1 MB/s) | MISS | 0.94 |" in text
    # 4 rows with a ratio (2 met) + 3 absolute targets (1 met)
    assert text.endswith("3 of 7 targets met")


def test_sizes_carry_swift_counts():
    assert vs_swift.parse_cells("4K,1M:100,64M") == [(4 * KIB, 2000), (MIB, 100), (64 * MIB, 24)]
    assert vs_swift.parse_cells("256K") == [(256 * KIB, 800)]
    assert vs_swift.parse_cells("4K", quick=True) == [(4 * KIB, 500)]
    assert [vs_swift.swift_label(s) for s in (4 * KIB, MIB, 64 * MIB, 1000)] == ["4KiB", "1MiB", "64MiB", "1000"]
    with pytest.raises(ValueError):
        vs_swift.parse_cells(" , ")


def test_the_target_row_is_measured_once():
    def settings(concurrency: list[int], target: int, sizes: str = "4K,1M") -> vs_swift.Settings:
        return vs_swift.Settings(cells=vs_swift.parse_cells(sizes), concurrency=concurrency, target_concurrency=target,
                                 seconds=1.0, out=Path("o"), tmp_root=Path("t"))
    assert settings([1, 8], 32).extra_row and settings([1, 8], 32).small_count == 2000
    assert not settings([1, 8, 32], 32).extra_row and not settings([1, 8], 0).extra_row
    assert settings([1, 8, 32], 32, "1M").extra_row and settings([1], 32, "4K:300").small_count == 300


def _fake_peer(tmp_path: Path, bench_body: str) -> SwiftPeer:
    """A harness whose scripts only leave marks, and a bench.py run by this Python."""
    d = tmp_path / "peer"
    d.mkdir()
    (d / "setup.sh").write_text("exit 0\n")
    (d / "start.sh").write_text(f"touch {tmp_path}/started\necho started fake\n")
    (d / "stop.sh").write_text(f"touch {tmp_path}/stopped\necho stopped fake\n")
    (d / "bench.py").write_text(textwrap.dedent(bench_body))
    return SwiftPeer(vs_swift.find_peer_dir(d), base=tmp_path / "base", port=1, python=sys.executable)


def _settings(tmp_path: Path) -> vs_swift.Settings:
    return vs_swift.Settings(cells=[(4 * KIB, 10)], concurrency=[1], target_concurrency=0, seconds=0.1,
                             out=tmp_path / "out", tmp_root=tmp_path)


def test_swift_is_stopped_even_when_its_benchmark_fails(tmp_path):
    peer = _fake_peer(tmp_path, """
        import sys
        print("PUT 4KiB c=1 run 1: ...", file=sys.stderr)
        sys.exit(3)
    """)
    said: list[str] = []
    with pytest.raises(SwiftPeerError, match=r"bench.py failed \(3\): PUT 4KiB c=1 run 1"):
        vs_swift._run_swift(peer, _settings(tmp_path), said.append)
    assert (tmp_path / "started").exists() and (tmp_path / "stopped").exists()
    assert "swift: PUT 4KiB c=1 run 1: ..." in said  # bench.py's progress is shown as it goes


def test_bench_arguments_and_json_line(tmp_path):
    peer = _fake_peer(tmp_path, f"""
        import json, sys
        print("progress", file=sys.stderr)
        print(json.dumps({{"argv": sys.argv[1:], **{json.dumps(SWIFT_JSON)}}}))
    """)
    (result,) = vs_swift._run_swift(peer, _settings(tmp_path), lambda text: None)
    argv = result["argv"]
    assert argv[argv.index("--sizes") + 1] == "4KiB:10" and argv[argv.index("--conc") + 1] == "1"
    assert argv[argv.index("--runs") + 1] == "1" and "--delete" in argv
    assert argv[argv.index("--run-dir") + 1] == str(tmp_path / "base" / "run")
    assert vs_swift.swift_cells([result])[("put", 4 * KIB, 1)]["ops_per_s"] == 75.0
    assert (tmp_path / "stopped").exists()


def test_running_reads_pidfiles_as_stop_sh_does(tmp_path):
    peer = SwiftPeer(tmp_path, base=tmp_path)
    peer.run_dir.mkdir()
    start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    (peer.run_dir / "proxy.pid").write_text(f"{os.getpid()} {start}\n")
    (peer.run_dir / "object-1.pid").write_text(f"{os.getpid()} {int(start) + 1}\n")  # a reused pid
    (peer.run_dir / "memcached.pid").write_text("garbage\n")
    assert peer.running() == ["proxy"]


def test_peer_not_set_up_is_one_line_and_says_how(tmp_path):
    peer = _fake_peer(tmp_path, "")
    with pytest.raises(SwiftPeerMissing, match=r"not set up .*proxy-server.conf missing.*SWIFTPEER_BASE=.*setup.sh"):
        SwiftPeer(peer.directory, base=tmp_path / "nothing", python=sys.executable).check()
    with pytest.raises(SwiftPeerMissing, match="harness not found"):
        vs_swift.find_peer_dir(tmp_path / "empty")


def test_command_line_without_swift_exits_2_in_one_line(tmp_path):
    env = {**os.environ, "SWIFTPEER_BASE": str(tmp_path / "none")}
    for argv in (["--vs-swift"], ["--vs-swift", "--swift-dir", str(tmp_path)]):
        proc = subprocess.run([sys.executable, "-m", "maillage.cli", "bench", *argv, "--out", str(tmp_path / "o")],
                              capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("maillage bench --vs-swift: ")
        assert "setup.sh" in proc.stderr
        assert not (tmp_path / "o").exists()  # nothing measured, nothing written


def test_chart_is_drawn(tmp_path):
    result = {"started": "2026-01-01T00:00:00+00:00", "loadavg_before": [0.1, 0.2, 0.3], "loadavg_after": [1, 1, 1],
              "comparison": _comparison()}
    path = vs_swift.write_chart(result, tmp_path / "vs_swift.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_missing_chart_library_is_an_error_not_a_silence(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(report.ChartsUnavailable, match="pip install -e ."):
        report.write_charts({"throughput": {"rows": []}}, tmp_path)


def test_vs_swift_json_is_serialisable():
    json.dumps(_comparison())
