"""The profilers: py-spy stacks into top functions and phases, thread CPU from /proc, the CPU budget of a PUT."""

from __future__ import annotations

import os
import threading
import time

import pytest

from maillage.benchmarks.profile_small import phases_of_collapsed, thread_cpu, top_of_collapsed

COLLAPSED = "\n".join([
    "run_forever (asyncio/base_events.py:600);_run_once (asyncio/base_events.py:1900) 10",
    "_worker (concurrent/futures/thread.py:83);work (maillage/node/coordinator.py:428);"
    "chunk_digest (maillage/proto/frame.py:121) 30",
    "_worker (concurrent/futures/thread.py:83);put (maillage/storage/chunks.py:200);"
    "_fsync (maillage/storage/chunks.py:369) 40",
    "_worker (concurrent/futures/thread.py:83);encode_frame (maillage/proto/frame.py:160);"
    "ZSTD_compressBlock_fast (libzstd.so.1) 15",
    "main (x.py:1);something_else (x.py:2) 5",
    "_bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81) 7",
    "run (uvloop/__init__.py:92);0x7f00 (libc.so.6);epoll_wait (libc.so.6) 3",
    "not a stack line",
])


def test_top_functions_by_own_and_total_samples():
    own, total, samples = top_of_collapsed(COLLAPSED, 3)
    assert samples == 110
    assert own[0] == ("_fsync (maillage/storage/chunks.py:369)", 40)
    assert total[0] == ("_worker (concurrent/futures/thread.py:83)", 85)  # a job's frames, not the idle worker


def test_phases_take_the_leaf_most_matching_frame():
    phases, samples = phases_of_collapsed(COLLAPSED)
    assert samples == 110
    assert dict(phases) == {"fsync": 40, "BLAKE3 hashing": 30, "zstd compress/decompress": 15,
                            "event loop (other Python)": 10, "idle: waiting": 10, "other": 5}


def test_thread_cpu_splits_the_main_thread_from_workers():
    done = threading.Event()
    spun = threading.Event()

    def spin() -> None:
        stop = time.monotonic() + 0.2
        while time.monotonic() < stop:
            pass
        spun.set()
        done.wait(10)

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        assert spun.wait(10)
        kinds = thread_cpu(os.getpid())
    finally:
        done.set()
        worker.join()
    assert "main (event loop)" in kinds and kinds["python workers"] > 0.05


def test_chunk_budget_adds_up_the_steps_of_a_put(tmp_path):
    from maillage.benchmarks.profile_large import _measured_cpu_per_op, chunk_budget, format_budget

    budget = chunk_budget(tmp_path / "b", rounds=2, object_size=8 << 20, transport=False)
    assert budget["chunks"] == 2 and not (tmp_path / "b").exists()
    rows = {r["step"]: r for r in budget["rows"]}
    assert all(r["cpu_ms"] >= 0 for r in rows.values())
    summed = sum(rows[s]["per_put_cpu_ms"] for s in budget["summed_steps"])
    assert budget["per_put_cpu_ms"] == pytest.approx(summed, abs=0.5)
    assert not any(s.startswith("ChunkStore.put") for s in budget["summed_steps"])  # it overlaps its parts
    text = format_budget(budget, measured_ms=budget["per_put_cpu_ms"] * 2)
    assert "CPU budget of one 8 MiB PUT (2 chunks" in text and "(50%)" in text
    # copies / BLAKE3 passes per chunk, as tests/node/test_write_path_copies.py counts them
    assert "client       1 / 1" in text and "coordinator  2 / 3" in text and "replica      1 / 1" in text

    report = ("64 MiB PUT c=1, 20.0 s under the profilers (...): [{'op': 'put', 'ops': 4, 'ops_per_s': 0.2}]\n\n"
              "CPU over the measured load (...):\n  site-a      2.00 s = 0.10 cores, waited 1.00 s   threads: x 1\n"
              "  client      0.40 s = 0.02 cores, waited 0.10 s   threads: x 1\n")
    assert _measured_cpu_per_op(report) == pytest.approx(600.0)
