"""The streaming-memory benchmark runs end to end at toy sizes (its figures are not judged here)."""

from __future__ import annotations

from maillage.benchmarks import streaming


def test_streaming_bench_reports_growth_per_process_at_each_size():
    result = streaming.run([2 << 20, 8 << 20])
    sizes = [r["size"] for r in result["rows"]]
    assert sizes == [2 << 20, 8 << 20] and result["size_ratio"] == 4
    for row in result["rows"]:
        assert set(row["peak_growth"]) == {"site-a", "site-b", "site-c", "client"}
        assert row["put_mb_per_s"] > 0 and row["get_mb_per_s"] > 0
    assert "peak growth" in streaming.format_result(result)
