"""The figures of simulation runs as a table, a text chart and an SVG chart."""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

from maillage.testing.sim.scenario import SimResult

__all__ = ["COLUMNS", "rows", "table", "chart", "svg"]

COLUMNS = ("sites", "msgs/s/node", "bytes/s/node", "handler ms/s", "detect p1", "detect p99",
           "holders all", "layout p99", "layout all", "access p99", "fan-out c/h/l/d", "false susp", "stale read",
           "repair", "sim s", "wall s")


def _s(seconds: float) -> str:
    return "never" if math.isinf(seconds) else f"{seconds:.1f}s"


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}GB"


def rows(results: Sequence[SimResult]) -> list[tuple[str, ...]]:
    """One row of `COLUMNS` per result; "-" for a figure whose phase was not run."""
    out: list[tuple[str, ...]] = []
    for r in results:
        ran = set(r.config.phases)

        def show(phase: str, text: str, ran: set[str] = ran) -> str:
            return text if phase in ran else "-"

        f = r.fan_out
        out.append((str(r.config.sites), show("idle", f"{r.msgs_per_node_s:.1f}"),
                    show("idle", _bytes(r.bytes_per_node_s)), show("idle", f"{r.handler_ms_per_node_s:.2f}"),
                    show("news", _s(r.detect_p1)), show("news", _s(r.detect_p99)),
                    show("news", f"{_s(r.holders_all)}({r.holders})"), show("news", _s(r.layout_p99)),
                    show("news", _s(r.layout_all)), show("news", _s(r.access_p99)),
                    show("buckets", "/".join(str(f.get(op, 0)) for op in ("create", "head", "list", "delete"))),
                    show("idle", str(r.false_suspicions)), show("stale", _s(r.stale_window)),
                    show("loss", _s(r.repair_convergence)), f"{r.simulated:.0f}", f"{r.wall:.0f}"))
    return out


def table(results: Sequence[SimResult]) -> str:
    body = [COLUMNS, *rows(results)]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def chart(results: Sequence[SimResult], width: int = 50) -> str:
    """Bars of per-node messages/s and bytes/s by mesh size (flat is the goal)."""
    lines = []
    for title, value, fmt in (("messages/s per node (idle)", lambda r: r.msgs_per_node_s, lambda v: f"{v:.1f}"),
                              ("bytes/s per node (idle)", lambda r: r.bytes_per_node_s, _bytes)):
        top = max((value(r) for r in results), default=0.0) or 1.0
        lines.append(title)
        for r in results:
            bar = "#" * max(1, round(value(r) / top * width))
            lines.append(f"  {r.config.sites:>5} sites |{bar} {fmt(value(r))}")
    lines.append(f"messages/s per node over the whole run (phases show as bumps; at most {width} columns)")
    bars = " ▁▂▃▄▅▆▇█"
    for r in results:
        group = max(1, math.ceil(len(r.per_second) / width))
        series = [sum(r.per_second[i:i + group]) / group for i in range(0, len(r.per_second), group)]
        top = max(series, default=0.0) or 1.0
        # a message counts for its sender and its receiver, as in the table
        lines.append(f"  {r.config.sites:>5} sites |{''.join(bars[round(v / top * 8)] for v in series)}| "
                     f"peak {2 * top / r.config.sites:.1f}")
    return "\n".join(lines)


def svg(results: Sequence[SimResult]) -> str:
    """A bar chart of messages/s and bytes/s per node for each mesh size, as a standalone SVG."""
    w, h, pad, band = 640, 300, 50, 110
    metrics = (("msgs/s per node", lambda r: r.msgs_per_node_s, "#3b6ea5"),
               ("kB/s per node", lambda r: r.bytes_per_node_s / 1000, "#c8553d"))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             'font-size="12">', f'<text x="{pad}" y="20">maillage sim: idle control traffic per node</text>']
    for m, (label, value, colour) in enumerate(metrics):
        top = max((value(r) for r in results), default=0.0) or 1.0
        x0 = pad + m * (w - pad) // 2
        parts.append(f'<text x="{x0}" y="40" fill="{colour}">{escape(label)}</text>')
        for i, r in enumerate(results):
            bar = (h - 2 * pad) * value(r) / top
            x = x0 + i * (band // max(1, len(results)) + 20)
            parts.append(f'<rect x="{x}" y="{h - pad - bar:.1f}" width="24" height="{bar:.1f}" fill="{colour}"/>')
            parts.append(f'<text x="{x}" y="{h - pad + 15}">{r.config.sites}</text>')
            parts.append(f'<text x="{x}" y="{h - pad - bar - 4:.1f}">{value(r):.0f}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
