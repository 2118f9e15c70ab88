"""`maillage bench --vs-swift` without Swift: the tables and both ratio columns (plain Swift, Swift
behind TLS; native and S3), the peer's orchestration against a fake harness (stop.sh runs whatever
happens, the TLS front included), bench.py driven through TLS, and the one-line "not set up" message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maillage.benchmarks import report, tls_front, vs_swift
from maillage.benchmarks.vs_swift import SwiftPeer, SwiftPeerError, SwiftPeerMissing

from .test_tls_front import echo_server

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
# the same bench.py cells behind TLS (slower), no 64 MiB cell
SWIFT_TLS_JSON = {"summary": [
    {"op": "PUT", "size": "4KiB", "objects": 2000, "conc": 1, "runs": 1, "mib_s": 0.23, "ops_s": 60.0,
     "server_cores": 1.2},
    {"op": "GET", "size": "4KiB", "objects": 2000, "conc": 1, "runs": 1, "mib_s": 0.62, "ops_s": 160.0,
     "server_cores": 1.1}]}
# S3 cells (s3_throughput.measure_s3 rows) of Swift's s3api plain and behind TLS, and of maillage's door
SWIFT_S3 = [_row("put", 4 * KIB, 1, 80.0), _row("get", 4 * KIB, 1, 100.0)]
SWIFT_S3_TLS = [_row("put", 4 * KIB, 1, 70.0), _row("get", 4 * KIB, 1, 90.0, errors=1)]
MAILLAGE_S3 = [_row("put", 4 * KIB, 1, 140.0), _row("get", 4 * KIB, 1, 140.0)]


def _comparison(s3: bool = False) -> dict:
    cells = vs_swift.maillage_cells
    return vs_swift.compare(vs_swift.swift_cells([SWIFT_JSON, SWIFT_C32]), vs_swift.maillage_cells(MAILLAGE_ROWS),
                            swift_tls=vs_swift.swift_cells([SWIFT_TLS_JSON]), disk_mb_per_s=400.0, replicas=2,
                            target_concurrency=32,
                            s3=(cells(SWIFT_S3), cells(SWIFT_S3_TLS), cells(MAILLAGE_S3)) if s3 else None)


def test_ratios_marks_and_order_of_the_table():
    table = {r["row"]: r for r in _comparison()["table"]}
    # by size, PUT before GET, then concurrency
    assert list(table) == ["PUT 4 KiB c1", "PUT 4 KiB c32", "GET 4 KiB c1", "GET 4 KiB c32", "PUT 64 MiB c1"]
    put = table["PUT 4 KiB c1"]
    assert put["swift_ops_per_s"] == 75.0 and put["swift_tls_ops_per_s"] == 60.0 and put["maillage_ops_per_s"] == 150.0
    assert put["ratio"] == 2.0 and put["ratio_tls"] == 2.5 and put["met"] is True
    assert (put["goal"], put["goal_tls"]) == (vs_swift.TARGET_PLAIN_RATIO, vs_swift.TARGET_RATIO) == (1.2, 1.5)
    get = table["GET 4 KiB c1"]
    # 1.25x plain Swift meets 1.2x; 250 / 160 = 1.56x Swift behind TLS meets 1.5x
    assert get["ratio"] == 1.25 and get["met_plain"] is True
    assert get["ratio_tls"] == pytest.approx(1.5625, abs=1e-3) and get["met_tls"] is True and get["met"] is True
    assert get["maillage_errors"] == 3
    # only plain Swift measured a cell: judged on that ratio alone, the TLS one is None
    assert table["PUT 4 KiB c32"]["ratio"] == pytest.approx(1200 / 110, abs=1e-3)
    assert table["PUT 4 KiB c32"]["ratio_tls"] is None and table["PUT 4 KiB c32"]["met_tls"] is None
    assert table["PUT 64 MiB c1"]["ratio"] == pytest.approx(1 / 2.8, abs=1e-3)
    assert table["PUT 64 MiB c1"]["met"] is False
    # a cell only one side measured has no ratio and no mark, never a fake pass
    assert table["GET 4 KiB c32"]["ratio"] is None and table["GET 4 KiB c32"]["met"] is None
    # server CPU per op: Swift cores / ops/s; maillage node CPU seconds / ops
    assert put["swift_cpu_ms_per_op"] == pytest.approx(1.2 / 75 * 1e3, abs=1e-3)
    assert put["swift_tls_cpu_ms_per_op"] == pytest.approx(1.2 / 60 * 1e3, abs=1e-3)
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


def test_format_table_prints_both_ratio_columns():
    text = vs_swift.format_table(_comparison())
    assert "ratio = maillage / Swift (target >= 1.2x), ratio TLS = maillage / Swift behind TLS (target >= 1.5x)" in text
    assert "| row | Swift | Swift+TLS | maillage | ratio | ratio TLS | |" in text
    assert "| PUT 4 KiB c1 | 75.0 | 60.0 | 150.0 | 2.00 | 2.50 | pass | 16.00 / 20.00 / 3.33 |" in text
    assert "| GET 4 KiB c1 | 200.0 | 160.0 | 250.0 | 1.25 | 1.56 | pass (3 maillage errors) |" in text
    assert "| GET 4 KiB c32 | - | - | 900.0 | - | - | - |" in text
    assert "| 4 KiB GET c32 >= 2,500 ops/s | 900.0 ops/s | MISS |" in text
    assert "0.34 (67.1 MB/s) | MISS | 0.94 |" in text
    assert "S3 door" not in text
    # 4 rows with a ratio (3 met) + 3 absolute targets (1 met)
    assert text.endswith("4 of 7 targets met")


def test_the_s3_table_sets_the_door_against_swifts_s3_layer():
    comparison = _comparison(s3=True)
    s3 = {r["row"]: r for r in comparison["s3_table"]}
    assert list(s3) == ["PUT 4 KiB c1", "GET 4 KiB c1"]
    assert (s3["PUT 4 KiB c1"]["ratio"], s3["PUT 4 KiB c1"]["ratio_tls"]) == (1.75, 2.0)
    assert s3["PUT 4 KiB c1"]["goal"] == s3["PUT 4 KiB c1"]["goal_tls"] == 1.5 and s3["PUT 4 KiB c1"]["met"]
    assert s3["GET 4 KiB c1"]["ratio"] == 1.4 and s3["GET 4 KiB c1"]["met"] is False
    # S3 CPU per op: the server processes' CPU seconds / operations, on every side
    assert s3["PUT 4 KiB c1"]["swift_cpu_ms_per_op"] == pytest.approx(1.0 / 160 * 1e3, abs=1e-3)
    text = vs_swift.format_table(comparison)
    assert "S3 door (boto3, same cells): maillage's over HTTPS / Swift's s3api" in text
    assert "| row | Swift | Swift+TLS | maillage S3 | ratio | ratio TLS | |" in text
    assert "| GET 4 KiB c1 | 100.0 | 90.0 | 140.0 | 1.40 | 1.56 | MISS (1 Swift errors) |" in text
    assert text.endswith("5 of 9 targets met")
    json.dumps(comparison)


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
                             out=tmp_path / "out", tmp_root=tmp_path, s3=False)


class Attempts:
    """run()'s `attempt`: a failing part is recorded, its empty value returned, the others go on."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def __call__(self, part, fn, empty):
        try:
            return fn()
        except Exception as exc:
            self.errors[part] = f"{type(exc).__name__}: {exc}"
            return empty


def test_swift_is_stopped_even_when_its_benchmark_fails(tmp_path):
    peer = _fake_peer(tmp_path, """
        import sys
        print("PUT 4KiB c=1 run 1: ...", file=sys.stderr)
        sys.exit(3)
    """)
    said: list[str] = []
    attempts = Attempts()
    out = vs_swift._run_swift(peer, _settings(tmp_path), said.append, attempts)
    assert re.match(r"SwiftPeerError: bench.py failed \(3\): PUT 4KiB c=1 run 1", attempts.errors["swift"])
    assert out["plain"] == [] and out["tls"] == []
    assert (tmp_path / "started").exists() and (tmp_path / "stopped").exists()
    assert "swift: PUT 4KiB c=1 run 1: ..." in said  # bench.py's progress is shown as it goes


def test_swift_is_stopped_when_start_fails(tmp_path):
    peer = _fake_peer(tmp_path, "")
    (peer.directory / "start.sh").write_text(f"touch {tmp_path}/started\necho port 6210 did not open >&2\nexit 1\n")
    with pytest.raises(SwiftPeerError, match="start.sh failed .1.: port 6210 did not open"):
        vs_swift._run_swift(peer, _settings(tmp_path), lambda text: None, Attempts())
    assert (tmp_path / "stopped").exists()


def test_bench_arguments_and_json_line(tmp_path):
    peer = _fake_peer(tmp_path, f"""
        import json, sys
        print("progress", file=sys.stderr)
        print(json.dumps({{"argv": sys.argv[1:], **{json.dumps(SWIFT_JSON)}}}))
    """)
    attempts = Attempts()
    out = vs_swift._run_swift(peer, _settings(tmp_path), lambda text: None, attempts)
    (result,) = out["plain"]
    argv = result["argv"]
    assert argv[argv.index("--sizes") + 1] == "4KiB:10" and argv[argv.index("--conc") + 1] == "1"
    assert argv[argv.index("--runs") + 1] == "1" and "--delete" in argv
    assert argv[argv.index("--run-dir") + 1] == str(tmp_path / "base" / "run")
    assert vs_swift.swift_cells([result])[("put", 4 * KIB, 1)]["ops_per_s"] == 75.0
    assert (tmp_path / "stopped").exists()
    if tls_front.haproxy_binary() is None:  # no terminator here: that part fails in one line, the rest stands
        assert attempts.errors == {"swift-tls-front": f"TlsFrontMissing: no haproxy here (TLS in front of Swift): "
                                                      f"`{tls_front.INSTALL}` as root, then retry"}
        return
    assert attempts.errors == {}  # haproxy started in front of port 1: bench.py (fake) never connects
    (through,) = out["tls"]
    argv = through["argv"]
    assert argv[argv.index("--url") + 1].startswith("https://127.0.0.1:") and out["tls_front"].startswith("HAProxy")
    assert Path(argv[argv.index("--run-dir") + 1]).name == "run"
    assert not Path(argv[argv.index("--run-dir") + 1]).exists()  # the front's temp dir is gone


def test_s3_needs_the_s3api_pipeline(tmp_path):
    peer = _fake_peer(tmp_path, "")
    (peer.base / "etc").mkdir(parents=True)
    conf = peer.base / "etc" / "proxy-server.conf"
    conf.write_text("[pipeline:main]\npipeline = catch_errors cache tempauth proxy-server\n")
    assert not peer.s3_enabled()
    conf.write_text("[pipeline:main]\n# s3api only with SWIFTPEER_S3API=1\n"
                    "pipeline = catch_errors ratelimit s3api tempauth proxy-server\n")
    assert peer.s3_enabled()
    conf.write_text("[pipeline:main]\npipeline = catch_errors ratelimit tempauth proxy-server\n[filter:s3api]\n")
    with pytest.raises(SwiftPeerError, match="no s3api: run `SWIFTPEER_S3API=1 bash .*setup.sh`"):
        vs_swift._swift_s3(peer, [4 * KIB], _settings(tmp_path), lambda text: None)


def test_server_pids_follow_the_recorded_process_groups(tmp_path):
    peer = SwiftPeer(tmp_path, base=tmp_path)
    peer.run_dir.mkdir()
    (peer.run_dir / "proxy.pid").write_text(f"{os.getpgrp()} 1\n")  # this test's own group stands for it
    pids = peer.server_pids(123456789)
    assert pids[f"proxy:{os.getpid()}"] == os.getpid() and pids["tls-front:123456789"] == 123456789


def test_bench_py_runs_unchanged_over_https_behind_the_front(tmp_path):
    """The shim makes bench.py's http.client.HTTPConnection an HTTPS one trusting the front's
    certificate; the front forwards to a plain HTTP server; bench.py counts the front's CPU."""
    if tls_front.haproxy_binary() is None:
        pytest.skip(f"no haproxy here: {tls_front.INSTALL}")
    peer = _fake_peer(tmp_path, """
        import http.client, json, os, sys, urllib.parse
        args = sys.argv[1:]
        url = urllib.parse.urlsplit(args[args.index("--url") + 1])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("PUT", "/v1/AUTH_test/c/o", body=b"x" * 5000)
        answer = conn.getresponse().read().decode()
        run_dir = args[args.index("--run-dir") + 1]
        print(json.dumps({"summary": [], "connection": type(conn).__name__, "answer": answer,
                          "pidfiles": sorted(os.listdir(run_dir)),
                          "front": open(os.path.join(run_dir, "tls-front.pid")).read().split()}))
    """)
    peer.run_dir.mkdir(parents=True)
    (peer.run_dir / "proxy.pid").write_text("1 1\n")
    with echo_server() as port, tls_front.TlsFront(port, tmp_root=tmp_path) as front:
        peer = SwiftPeer(peer.directory, base=peer.base, port=port, python=sys.executable)
        result = peer.bench([(4 * KIB, 1)], [1], lambda text: None, timeout=60, front=front)
        assert result["connection"] == "HTTPSOnly" and result["answer"] == "PUT /v1/AUTH_test/c/o 5000 https"
        assert result["pidfiles"] == ["proxy.pid", "tls-front.pid"]
        assert result["front"] == [str(front.pid), tls_front.process_start_time(front.pid)]


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
    result["comparison"] = _comparison(s3=True)
    path = vs_swift.write_chart(result, tmp_path / "vs_swift.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_missing_chart_library_is_an_error_not_a_silence(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(report.ChartsUnavailable, match="pip install -e ."):
        report.write_charts({"throughput": {"rows": []}}, tmp_path)


def test_vs_swift_json_is_serialisable():
    json.dumps(_comparison())


def test_plain_and_tls_alternate_size_by_size(tmp_path):
    """Both sides of a ratio measured close in time: per size plain then TLS, the next size TLS first."""
    calls = tmp_path / "calls"
    peer = _fake_peer(tmp_path, f"""
        import json, sys
        args = sys.argv[1:]
        with open({str(calls)!r}, "a") as f:
            f.write(args[args.index("--url") + 1].split(":")[0] + " " + args[args.index("--sizes") + 1] + "\\n")
        print(json.dumps({{"summary": []}}))
    """)
    s = vs_swift.Settings(cells=[(4 * KIB, 10), (MIB, 5)], concurrency=[1], target_concurrency=0, seconds=0.1,
                          out=tmp_path / "out", tmp_root=tmp_path, s3=False)
    attempts = Attempts()
    out = vs_swift._run_swift(peer, s, lambda text: None, attempts)
    lines = calls.read_text().splitlines()
    if tls_front.haproxy_binary() is None:
        assert lines == ["http 4KiB:10", "http 1MiB:5"] and out["tls"] == []
    else:
        assert lines == ["http 4KiB:10", "https 4KiB:10", "https 1MiB:5", "http 1MiB:5"]
        assert len(out["plain"]) == len(out["tls"]) == 2 and attempts.errors == {}
