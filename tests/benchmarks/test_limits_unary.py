"""The floor of a small request (`limits --unary`) keeps measuring: real processes, mutual TLS."""

from __future__ import annotations

import subprocess
import sys

from maillage.benchmarks.limits import measure_grpc_unary


def test_unary_floor_gives_calls_and_cpu_on_both_sides():
    found = measure_grpc_unary(size=4096, concurrency=4, seconds=1.0)
    assert found["tls"] is True and found["size"] == 4096 and found["concurrency"] == 4
    assert found["calls_per_s"] > 10
    assert 0 < found["caller_cpu_ms_per_call"] < 50
    assert found["server_cpu_ms_per_call"] is not None and 0 < found["server_cpu_ms_per_call"] < 50


def test_unary_is_an_option_of_the_command():
    proc = subprocess.run([sys.executable, "-m", "maillage.benchmarks.limits", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--unary" in proc.stdout
