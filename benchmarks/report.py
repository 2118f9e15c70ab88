"""Turn a harness result into ratios, targets, a markdown report, PNG charts and a terminal summary.

Every mesh figure is shown next to the limit it runs into, measured in the same run
(`limits.py`): PUT against the disk's write+fsync speed divided by R (each byte is written on R
disks of the same machine) and against gRPC raw streaming; GET against loopback TCP; repair
against the victim's disk write speed, with the time bound data / aggregate bandwidth next to
the measured time. The issue's targets are checked here too: they are benchmark figures, not
tests, so a miss is reported, never raised.
"""

from __future__ import annotations

import json
from pathlib import Path

from maillage.benchmarks.mesh import format_size

__all__ = ["add_ratios", "check_targets", "write_json", "markdown", "write_charts", "summary", "pyplot",
           "ChartsUnavailable"]

KIB, MIB = 1024, 1 << 20
IDLE_RSS_TARGET = 150e6


def _limit(limits: dict, name: str) -> float | None:
    row = limits.get(name) or {}
    return row.get("mb_per_s")


def _ratio(value: float | None, limit: float | None) -> float | None:
    return float(f"{value / limit:.4g}") if value is not None and limit else None  # small ratios stay > 0


def add_ratios(result: dict) -> None:
    """Add `limits`-relative ratios to the throughput rows and the repair runs, in place."""
    limits = result.get("limits") or {}
    replicas = result["params"]["replicas"]
    disk = _limit(limits, "disk_write_fsync")
    for row in (result.get("throughput") or {}).get("rows", []):
        if row["op"] == "put":
            row["limit_name"] = f"disk write+fsync / R={replicas}"
            row["limit_mb_per_s"] = round(disk / replicas, 1) if disk else None
            row["ratio_grpc_raw"] = _ratio(row["mb_per_s"], _limit(limits, "grpc_raw_put"))
        else:
            row["limit_name"] = "loopback TCP"
            row["limit_mb_per_s"] = _limit(limits, "loopback_tcp")
            row["ratio_grpc_raw"] = _ratio(row["mb_per_s"], _limit(limits, "grpc_raw_get"))
        row["ratio_to_limit"] = _ratio(row["mb_per_s"], row["limit_mb_per_s"])
    for run in result.get("repair") or []:
        rate = run["params"]["repair_rate_mb_s"] * run["sources"]
        candidates = {"victim disk write+fsync": disk, "loopback TCP": _limit(limits, "loopback_tcp"),
                      f"{run['sources']} sources x --repair-rate": rate}
        name, bandwidth = min(((k, v) for k, v in candidates.items() if v), key=lambda kv: kv[1],
                              default=(None, None))
        run["bound_name"] = name
        run["bound_mb_per_s"] = bandwidth
        # three significant digits, not two decimals: a small (quick) run's bound is a few ms
        run["bound_s"] = float(f"{run['victim_bytes'] / 1e6 / bandwidth:.3g}") if bandwidth else None
        run["ratio_to_disk_write"] = _ratio(run["mb_per_s"], disk)


def _cell(rows: list[dict], op: str, size: int, concurrency: int) -> dict | None:
    return next((r for r in rows if r["op"] == op and r["size"] == size and r["concurrency"] == concurrency), None)


def check_targets(result: dict) -> list[dict]:
    """The issue's targets that this run measured, each with value, target and met."""
    out = []
    rows = (result.get("throughput") or {}).get("rows", [])
    limits = result.get("limits") or {}
    disk = _limit(limits, "disk_write_fsync")
    replicas = result["params"]["replicas"]
    top = max((r["concurrency"] for r in rows), default=None)

    def add(name: str, value, target, unit: str) -> None:
        if value is not None and target is not None:
            out.append({"target": name, "value": value, "goal": round(target, 1), "unit": unit,
                        "met": value >= target})

    for row in rows:
        if row["size"] == 64 * MIB and row["op"] == "put" and disk:
            add(f"64 MiB PUT c={row['concurrency']} >= 60% of disk write+fsync / R", row["mb_per_s"],
                0.6 * disk / replicas, "MB/s")
        if row["size"] == 64 * MIB and row["op"] == "get":
            add(f"64 MiB GET c={row['concurrency']} >= 500 MB/s", row["mb_per_s"], 500, "MB/s")
    if top is not None:
        for op, goal in (("put", 1000), ("get", 2500)):
            cell = _cell(rows, op, 4 * KIB, top)
            if cell:
                add(f"4 KiB {op.upper()} c={top} >= {goal:,} ops/s" + ("" if top == 32 else " (target is at c=32)"),
                    cell["ops_per_s"], goal, "ops/s")
        idle = (result.get("throughput") or {}).get("idle_rss", {})
        for node, rss in idle.items():
            if node != "client" and rss:
                out.append({"target": f"node {node} RSS at idle <= 150 MB", "value": round(rss / 1e6, 1),
                            "goal": 150, "unit": "MB", "met": rss <= IDLE_RSS_TARGET})
    for run in result.get("repair") or []:
        if disk:
            value = run["mb_per_s"] or 0.0
            out.append({"target": f"repair N={run['params']['sites']} >= 50% of disk write", "value": value,
                        "goal": round(0.5 * disk, 1), "unit": "MB/s", "met": value >= 0.5 * disk})
    times = [(r["params"]["sites"], r["seconds"]) for r in result.get("repair") or [] if r["converged"]]
    if len(times) >= 2:
        times.sort()
        falls = all(b[1] < a[1] for a, b in zip(times, times[1:]))
        out.append({"target": "repair time falls as N grows",
                    "value": " > ".join(f"{t:.1f} s (N={n})" for n, t in times),
                    "goal": "decreasing", "unit": "", "met": falls})
        # each node holds about R/N of the data, so the time falls even with no parallelism at all:
        # the repair rate tells whether the N-1 sources are really used together
        rates = sorted((r["params"]["sites"], r["mb_per_s"]) for r in result["repair"] if r["converged"])
        grows = all(b[1] > 1.2 * a[1] for a, b in zip(rates, rates[1:]))
        out.append({"target": "repair MB/s grows with N (sources used in parallel; informative, +20% per step)",
                    "value": " < ".join(f"{v:.1f} MB/s (N={n})" for n, v in rates), "goal": "increasing",
                    "unit": "", "met": grows})
    return out


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


# ----- markdown ------------------------------------------------------------------------------

def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _g(value) -> str:
    """A ratio with 3 significant digits, so 0.0004 does not print as 0.000."""
    return "-" if value is None else f"{value:.3g}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines + [""]


def markdown(result: dict) -> str:
    m, p = result["machine"], result["params"]
    lines = [f"# maillage benchmark, {result['started']}", "",
             f"{m['cores']} cores ({m.get('cpu')}), {m['ram_bytes'] / 2**30:.1f} GiB RAM, kernel {m['kernel']}, "
             f"Python {m['python']}; data dir {m.get('data_fs', '?')}. Load average at start "
             f"{m['loadavg_at_start']}, at end {result.get('loadavg_at_end')}: other work on the machine "
             "lowers every figure, so read them as conservative.", "",
             f"Mode: {'quick' if p['quick'] else 'full'}; mesh of {p['sites']} sites on loopback, R={p['replicas']}, "
             "fsync on; client in the same machine. Packages: "
             + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + ".", ""]
    if result.get("targets"):
        lines += ["## Targets (issue #6)", ""]
        lines += _table(["target", "measured", "goal", "met"],
                        [[t["target"], f"{_fmt(t['value'])} {t['unit']}", f"{_fmt(t['goal'])} {t['unit']}",
                          "yes" if t["met"] else "**no**"] for t in result["targets"]])
    limits = result.get("limits")
    if limits:
        lines += ["## Limits of this machine (same run)", ""]
        lines += _table(["limit", "MB/s", "runs"],
                        [[row["label"], row.get("mb_per_s"), ", ".join(map(str, row.get("runs", [])))
                          or row.get("error", "")] for row in limits.values()])
    tp = result.get("throughput")
    if tp:
        lines += ["## Throughput", "",
                  "Ratio = MB/s / limit (PUT: disk write+fsync / R; GET: loopback TCP); gRPC = MB/s / gRPC raw "
                  "streaming of the same direction. CPU: client CPU seconds per operation, and the whole "
                  "machine's use (client + nodes) as a share of all cores.", ""]
        lines += _table(["op", "size", "c", "ops/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "ratio", "gRPC",
                         "client CPU ms/op", "machine CPU", "peak node RSS MB", "errors"],
                        [[r["op"].upper(), format_size(r["size"]), r["concurrency"], r["ops_per_s"], r["mb_per_s"],
                          r["p50_ms"], r["p90_ms"], r["p99_ms"], _g(r.get("ratio_to_limit")),
                          _g(r.get("ratio_grpc_raw")), r["client_cpu_per_op_ms"],
                          f"{r['cpu_util_of_machine']:.0%}",
                          max((v for k, v in r["peak_rss"].items() if k != "client"), default=0) / 1e6,
                          r.get("errors", 0)] for r in tp["rows"]])
        lines += ["Node RSS at idle (MB): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in tp["idle_rss"].items() if v),
                  ""]
        if tp.get("security_cost"):
            lines += ["### Cost of TLS and authentication", "",
                      "The same cells on a second mesh run with `--insecure-plaintext` (no TLS, no request "
                      "signatures; benchmarks only). Ratio = secure ops/s / plaintext ops/s.", ""]
            lines += _table(["op", "size", "c", "secure ops/s", "plaintext ops/s", "ratio"],
                            [[r["op"].upper(), format_size(r["size"]), r["concurrency"], r["secure_ops_per_s"],
                              r["plaintext_ops_per_s"], r["ratio"]] for r in tp["security_cost"]])
    if result.get("repair"):
        lines += ["## Repair of a wiped node", "",
                  "Bound = victim's bytes / the smallest of "
                  "(its disk write+fsync, loopback, sources x repair-rate cap).",
                  ""]
        lines += _table(["sites", "sources", "victim MB", "converged", "time s", "MB/s", "bound s", "bound by",
                         "ratio to disk write", "load PUT MB/s"],
                        [[r["params"]["sites"], r["sources"], r["victim_bytes"] / 1e6,
                          "yes" if r["converged"] else f"no: {r.get('note')}", r["seconds"], r["mb_per_s"],
                          r.get("bound_s"), r.get("bound_name") or "-", _g(r.get("ratio_to_disk_write")),
                          r["load"]["put_mb_per_s"]] for r in result["repair"]])
    if result.get("placement"):
        from maillage.benchmarks.placement_bench import format_table
        lines += ["## Placement", "", format_table(result["placement"]), ""]
    if result.get("errors"):
        lines += ["## Steps that failed", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()] + [""]
    if result.get("charts"):
        lines += ["## Charts", ""] + [f"![{Path(c).stem}]({Path(c).name})" for c in result["charts"]] + [""]
    return "\n".join(lines)


# ----- charts --------------------------------------------------------------------------------

class ChartsUnavailable(RuntimeError):
    """matplotlib cannot be imported: a broken install, said loudly rather than skipped."""


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend; ChartsUnavailable (with the fix) if missing.

    matplotlib is a dependency of maillage (pyproject.toml), so `python3 -m pip install -e .`
    brings it: a run that cannot draw says why and how to fix it, and the harness records it as
    a failed step. `--no-charts` is the way to run without charts."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ChartsUnavailable(f"cannot draw charts: {exc} (matplotlib is a dependency of maillage: "
                                "reinstall with `python3 -m pip install -e .`, or pass --no-charts)") from exc
    return plt


def write_charts(result: dict, out: Path) -> list[str]:
    """PNG charts next to the JSON (ChartsUnavailable when matplotlib cannot be imported)."""
    plt = pyplot()
    written = []
    rows = (result.get("throughput") or {}).get("rows", [])
    if rows:
        sizes = sorted({r["size"] for r in rows})
        conc = sorted({r["concurrency"] for r in rows})
        fig, axes = plt.subplots(2, len(sizes), figsize=(4 * len(sizes), 6.5), squeeze=False)
        for j, size in enumerate(sizes):
            for i, (metric, unit) in enumerate((("mb_per_s", "MB/s"), ("ops_per_s", "ops/s"))):
                ax = axes[i][j]
                for op in ("put", "get"):
                    ys = [(_cell(rows, op, size, c) or {}).get(metric, 0) for c in conc]
                    ax.plot(conc, ys, marker="o", label=op.upper())
                limit = next((r.get("limit_mb_per_s") for r in rows if r["size"] == size and r["op"] == "put"), None)
                if metric == "mb_per_s" and limit and size >= MIB:  # far off the scale below
                    ax.axhline(limit, color="grey", linestyle="--", linewidth=1, label="disk write / R")
                ax.set_xscale("log", base=2)
                ax.set_xticks(conc, [str(c) for c in conc])
                ax.set_title(f"{format_size(size)}: {unit}")
                ax.set_xlabel("concurrency")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out / "throughput.png", plt))
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
        labels = [f"{format_size(r['size'])}\nc={r['concurrency']}" for r in rows if r["op"] == "put"]
        for k, op in enumerate(("put", "get")):
            ax = axes[0][k]
            cells = [r for r in rows if r["op"] == op]
            x = range(len(cells))
            for q, offset in (("p50_ms", -0.27), ("p90_ms", 0), ("p99_ms", 0.27)):
                ax.bar([i + offset for i in x], [r[q] for r in cells], width=0.27, label=q[:-3])
            ax.set_xticks(list(x), labels, fontsize=7)
            ax.set_yscale("log")
            ax.set_ylabel("latency (ms)")
            ax.set_title(f"{op.upper()} latency percentiles")
            ax.grid(alpha=0.3, axis="y")
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out / "latency.png", plt))
    repairs = result.get("repair") or []
    if repairs:
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in repairs:
            ts = [s["t"] for s in r["series"]]
            ax.plot(ts, [s["fraction"] * 100 for s in r["series"]], marker=".",
                    label=f"N={r['params']['sites']} ({r['victim_bytes'] / 1e6:,.0f} MB)"
                          + ("" if r["converged"] else ", did not converge"))
            if r.get("bound_s"):
                ax.axvline(r["bound_s"], linestyle="--", linewidth=1, color=ax.lines[-1].get_color())
        ax.set_xlabel("seconds since the wiped node restarted")
        ax.set_ylabel("victim's items back (%)")
        ax.set_ylim(0, 105)
        ax.set_title("Repair progress (dashed: bandwidth bound)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out / "repair.png", plt))
    return written


def _save(fig, path: Path, plt) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# ----- terminal ------------------------------------------------------------------------------

def summary(result: dict) -> str:
    lines = []
    limits = result.get("limits") or {}
    if limits:
        lines.append("limits (MB/s): " + ", ".join(
            f"{k} {v['mb_per_s']:,.0f}" if v.get("mb_per_s") else f"{k} -" for k, v in limits.items()))
    for r in (result.get("throughput") or {}).get("rows", []):
        ratio = r.get("ratio_to_limit")
        lines.append(f"{r['op'].upper():>3} {format_size(r['size']):>7} c={r['concurrency']:<3} "
                     f"{r['ops_per_s']:>9,.1f} ops/s {r['mb_per_s']:>8,.1f} MB/s p50 {r['p50_ms']:7.1f} ms "
                     f"p99 {r['p99_ms']:7.1f} ms" + (f"  {ratio:.3g}x {r['limit_name']}" if ratio is not None else ""))
    for r in result.get("repair") or []:
        if r["converged"]:
            lines.append(f"repair N={r['params']['sites']}: {r['seconds']:.1f} s, {r['mb_per_s']:,.1f} MB/s "
                         f"(bound {r.get('bound_s')} s by {r.get('bound_name')})")
        else:
            lines.append(f"repair N={r['params']['sites']}: {r['note']}")
    for p in result.get("placement") or []:
        lines.append(f"placement {p['sites']} sites: max/mean {p['max_mean']}, moved/ideal {p['moved_ratio']}, "
                     f"build {p['build_s']} s")
    missed = [t for t in result.get("targets", []) if not t["met"]]
    met = len(result.get("targets", [])) - len(missed)
    lines.append(f"targets: {met} met, {len(missed)} missed" + (": " + "; ".join(t["target"] for t in missed)
                                                                if missed else ""))
    return "\n".join(lines)
