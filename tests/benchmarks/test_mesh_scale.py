"""The mesh-scale benchmark: its judgement of figures (in-process) and one small real run."""

from __future__ import annotations

from maillage.benchmarks.mesh_scale import Row, format_row, measure, ratios, verdict_of


def test_ratios_read_a_ceiling_and_a_floor_the_right_way_round():
    row = Row(100, start_s=15.0, idle_cpu_ms_per_s=10.0, rss_mb=60.0, put_per_s=50.0, status_s=0.5, audit_s=2.5)
    r = ratios(row)
    assert r["start_s"] == 0.5 and r["idle_cpu_ms_per_s"] == 2.0 and r["rss_mb"] == 1.0
    assert r["put_per_s"] == 2.0           # half the floor: missed by a factor 2
    text = format_row(row)
    assert "idle_cpu_ms_per_s" in text and "MISSED" in text
    assert "ratio 0.50 ok" in text


def test_the_verdict_is_the_audit_line_or_what_came_out():
    assert verdict_of("a\nverdict: every copy inside its policy; fully replicated\n") == \
        "every copy inside its policy; fully replicated"
    assert verdict_of("maillage: cannot read the layout\n") == "maillage: cannot read the layout"
    assert verdict_of("") == "(no output)"


def test_a_small_real_run_gives_every_figure():
    row = measure(3, idle=1.0, settle=0.0, puts=5, log=lambda _text: None)
    assert not row.errors, row.errors
    assert row.start_s > 0 and row.idle_s >= 1.0
    assert row.idle_cpu_ms_per_s > 0 and row.rss_mb > 10 and row.pss_mb > 0
    assert row.put_per_s > 0 and row.get_per_s > 0
    assert row.status_exit == 0 and row.audit_exit == 0
    assert "fully replicated" in row.audit_verdict and "NOT" not in row.audit_verdict
