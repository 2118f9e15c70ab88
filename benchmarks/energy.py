"""`maillage bench --energy`: a week of a mesh's background work, energy-aware next to fixed-interval.

    maillage bench --energy [--energy-sites 24] [--energy-days 7] [--energy-seed 1] [--energy-start 2026-03-16]
    python -m maillage.benchmarks.energy ...   (the same)

Issue 26's "done when": over sites in several regions with PV curves, a week of writes, a site lost
(urgent repair) and a rebalance (24 h deadline), scrub (a 14-day cycle) and GC and expiry, the same
run twice on simulated time (`energy_sim`): once as nodes with a `solar:` source run it (the node's
`EnergyScheduler`, `decide.pace`), once as nodes without one (today's fixed intervals). Deterministic:
one seed, one table. It prints, per mode, the share of deferrable bytes moved in green windows (goal
>= 80 %; fixed scheduling gets about the share of green time), each deadline met or not, the time to
re-replicate the lost site (urgent work never waits: the same in both), the estimated energy of the
background work (`power.PowerModel`) and the part of it the PV surplus did not cover; then each goal
as a ratio (a floor: goal / figure, a ceiling: figure / goal; <= 1 meets it) and a chart of one
site's day. Why simulated: a week of real nodes is a week, and the figures are the scheduler's
decisions, which the simulation runs unchanged; what it does not run is the I/O (see `energy_sim`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from maillage.benchmarks.energy_sim import CHARTED, MODES, Scenario, Tally, simulate
from maillage.benchmarks.energy_sites import DAY, Site, make_sites, pv_model_name, readings
from maillage.node.energy.signal import State

__all__ = ["Settings", "scenario", "run", "verdicts", "format_table", "chart", "add_arguments", "command", "main"]

GREEN_GOAL = 0.8
LABELS = {"energy": "energy-aware", "fixed": "fixed interval"}


@dataclass(frozen=True)
class Settings:
    sites: int = 24
    days: int = 7
    seed: int = 1
    start: str = "2026-03-16"
    step: float = 60.0


def scenario(s: Settings) -> Scenario:
    """The run's sites and events: a site lost on day 2 at 20:00 UTC (a night: urgent work then meets a
    grey window), capacity added to a quarter of the sites on day 4 at 16:00 UTC (late afternoon: some
    sites still green, the rest not), each pulling 300 GB within 24 h."""
    if s.sites < 4 or s.days < 1 or s.step <= 0:
        raise ValueError("--energy-sites must be at least 4, --energy-days at least 1, the step positive")
    start = datetime.fromisoformat(s.start).replace(tzinfo=UTC).timestamp()
    rng = random.Random(s.seed)
    sites = make_sites(s.sites, start, s.days, rng)
    names = [site.name for site in sites]
    lost = rng.choice(names)
    receivers = tuple(rng.sample([n for n in names if n != lost], max(1, s.sites // 4)))
    at = min(s.days - 1, 2) * DAY
    return Scenario(tuple(sites), start, s.days, step=s.step, lost=lost, lost_at=start + at + 20 * 3600.0,
                    rebalance_at=start + min(s.days - 1, 4) * DAY + 16 * 3600.0, receivers=receivers, seed=s.seed)


def run(s: Settings, log=lambda text: None) -> dict:
    """Both modes of the scenario; a dict of figures (JSON-ready) with each mode's `Tally`."""
    sc = scenario(s)
    chart_site = sc.receivers[0]
    result: dict = {"settings": asdict(s), "pv_model": pv_model_name(), "lost": sc.lost, "receivers": sc.receivers,
                    "chart_site": chart_site, "modes": {}}
    for mode in MODES:
        began = time.monotonic()
        log(f"energy: {LABELS[mode]} scheduling, {s.sites} sites, {s.days} simulated days")
        tally = simulate(sc, mode, chart_sites=(chart_site,))
        result["modes"][mode] = tally
        log(f"  -> {time.monotonic() - began:.1f} s")
    result["scenario"] = sc
    result["verdicts"] = verdicts(result)
    return result


def _share(t: Tally) -> float:
    total, green = t.deferrable()
    return green / total if total else 0.0


def _deadlines(t: Tally, kind: str, end: float) -> tuple[int, int]:
    """(met, all) of one kind's deadlines."""
    mine = [d for d in t.deadlines if d.kind == kind]
    return sum(d.met(end) for d in mine), len(mine)


def verdicts(result: dict) -> list[dict]:
    """Each goal of the issue: the figure, the goal, the ratio (<= 1 meets it), ok or not."""
    sc: Scenario = result["scenario"]
    end = sc.start + sc.days * DAY
    energy, fixed = result["modes"]["energy"], result["modes"]["fixed"]
    out = []

    def add(name: str, figure: float, goal: float, kind: str) -> None:
        ratio = (goal / figure if figure else float("inf")) if kind == "min" else (figure / goal if goal else 0.0)
        out.append({"name": name, "figure": figure, "goal": goal, "kind": kind, "ratio": ratio, "ok": ratio <= 1.0})

    add("green share, energy-aware", _share(energy), GREEN_GOAL, "min")
    add("green share over fixed", _share(energy) / max(_share(fixed), 1e-9), 1.25, "min")
    for kind in ("scrub", "rebalance"):
        met, total = _deadlines(energy, kind, end)
        add(f"{kind} deadlines met, energy-aware", met / total if total else 1.0, 1.0, "min")
    for kind in ("gc", "expiry"):
        add(f"{kind} longest wait, energy-aware (h)", energy.longest_wait.get(kind, 0.0) / 3600, 24.0, "max")
    urgent_e, urgent_f = energy.urgent_s or 0.0, fixed.urgent_s or 0.0
    add("urgent repair time / fixed", urgent_e / urgent_f if urgent_f else 1.0, 1.0, "max")
    return out


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def format_table(result: dict) -> str:
    """The comparison table (markdown), then each goal with its ratio."""
    sc: Scenario = result["scenario"]
    end = sc.start + sc.days * DAY
    header = ("| scheduling | deferrable bytes | in green windows | under shed orders | scrub deadlines (14 d) "
              "| rebalance (24 h) | GC / expiry passes, longest wait | urgent repair | background energy, grid part "
              "| CO2 |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for mode in MODES:
        t: Tally = result["modes"][mode]
        total, _green = t.deferrable()
        s_met, s_all = _deadlines(t, "scrub", end)
        r_met, r_all = _deadlines(t, "rebalance", end)
        slowest = max((d.finished - d.opened for d in t.deadlines if d.kind == "rebalance" and d.finished),
                      default=None)
        passes = " / ".join(f"{t.passes.get(k, 0)} ({_pct(t.green_passes.get(k, 0), t.passes.get(k, 0))} green), "
                            f"{_hours(t.longest_wait.get(k))}" for k in ("gc", "expiry"))
        lines.append(
            f"| {LABELS[mode]} | {_bytes(total)} | {100 * _share(t):.1f} % | {_bytes(t.shed_bytes)} "
            f"| {s_met}/{s_all} met | {r_met}/{r_all} met, slowest {_hours(slowest)} | {passes} "
            f"| {_hours(t.urgent_s)} | {t.joules / 3600:.1f} Wh, {t.grid_joules / 3600:.1f} Wh "
            f"| {t.co2_g:.2f} g |")
    fixed = result["modes"]["fixed"]
    notes = [f"green time (share of site-hours in a green window): {100 * fixed.green_time:.1f} %; "
             f"by kind, in green windows: " + "; ".join(
                 f"{LABELS[m]} " + ", ".join(f"{k} {_pct(result['modes'][m].green.get(k, 0), v)}"
                                            for k, v in sorted(result["modes"][m].bytes.items()))
                 for m in MODES)]
    checks = []
    for v in result["verdicts"]:
        checks.append(f"  {v['name']:<40} {v['figure']:8.3f}  goal {'>=' if v['kind'] == 'min' else '<='} "
                      f"{v['goal']:g}: ratio {v['ratio']:.2f} {'ok' if v['ok'] else 'MISSED'}")
    return "\n".join([*lines, "", *notes, *checks])


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "-"


_LEVELS = " .:-=+*#%@"
_STATE = {State.GREEN: "G", State.GREY: ".", State.SHED: "S", State.UNKNOWN: "?"}


def chart(result: dict) -> str:
    """One site's day, the 24 hours from noon (UTC) of the rebalance's day: PV surplus as bars around
    zero, the energy state its reading gives (G green, . grey, S shed), and per mode (energy-aware,
    fixed) the bytes each kind moved in the hour, as a level of ' .:-=+*#%@' of the kind's full rate."""
    sc: Scenario = result["scenario"]
    name = result["chart_site"]
    site: Site = next(s for s in sc.sites if s.name == name)
    first = max(0, int((sc.rebalance_at - sc.start) // DAY) * 24 + 12)
    first = min(first, sc.days * 24 - 24)
    hours = range(first, first + 24)
    rs = readings(site, [sc.start + h * 3600.0 + 1800.0 for h in hours])
    surplus = [(r.surplus_w or 0.0) / 1000 for r in rs]
    top = max(1e-9, max(abs(s) for s in surplus))
    width = 22
    rows = [f"{name} ({site.region.location}, {site.model.lat:.1f}N {site.model.lon:.1f}E, "
            f"{site.model.peak_w / 1000:.0f} kWp, load {site.model.load_w / 1000:.1f} kW, grid "
            f"~{site.region.carbon:.0f} g/kWh), from {_when(sc.start + first * 3600)}",
            f"{'hour (UTC)':<{width}}" + "".join(f"{h % 24:>3}" for h in hours)]
    height = 3
    for level in range(height, -height - 1, -1):
        if level == 0:
            rows.append(f"{'PV surplus    0 kW':<{width}}" + "---" * 24)
            continue
        label = f"{top * level / height:+.1f} kW |" if abs(level) == height else "|"
        cells = "".join(" ##" if (level > 0 and s * height / top >= level - 0.5)
                        or (level < 0 and s * height / top <= level + 0.5) else "   " for s in surplus)
        rows.append(f"{label:>{width}}" + cells)
    rows.append(f"{'state':<{width}}" + "".join(f"{_STATE[r.state()]:>3}" for r in rs))
    full = {0: sc.scrub_rate * 3600, 1: sc.repair_rate * 3600, 2: sc.repair_rate * 3600}
    for j, kind in enumerate(CHARTED):
        per_mode = {m: result["modes"][m].hourly[name][first:first + 24] for m in MODES}
        if not any(h[j] for m in MODES for h in per_mode[m]):
            continue
        for mode in MODES:
            cells = "".join(f"{_LEVELS[min(9, max(1 if h[j] else 0, round(9 * h[j] / full[j])))]:>3}"
                            for h in per_mode[mode])
            rows.append(f"{kind.value + ', ' + mode:<{width}}" + cells)
    rows.append(f"bytes moved per hour, '@' = the kind's full rate (scrub {_bytes(full[0])}/h, "
                f"repair {_bytes(full[1])}/h)")
    return "\n".join(rows)


def _when(t: float) -> str:
    return f"{datetime.fromtimestamp(t, UTC):%a %d %b %H:%M} UTC"


def _json(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k not in ("scenario", "modes")}
    out["modes"] = {m: asdict(t) for m, t in result["modes"].items()}
    out["sites"] = [{"name": s.name, "location": s.region.location, **asdict(s.model)}
                    for s in result["scenario"].sites]
    return out


def add_arguments(parser: argparse._ActionsContainer) -> None:
    d = Settings()
    parser.add_argument("--energy-sites", type=int, default=d.sites, metavar="N",
                        help=f"simulated sites, spread over 8 regions of 6 countries (default {d.sites})")
    parser.add_argument("--energy-days", type=int, default=d.days, metavar="DAYS",
                        help=f"simulated days (default {d.days})")
    parser.add_argument("--energy-seed", type=int, default=d.seed, metavar="SEED",
                        help=f"the seed of the sites, loads and events: one seed, one table (default {d.seed})")
    parser.add_argument("--energy-start", default=d.start, metavar="YYYY-MM-DD",
                        help=f"first simulated day, UTC (default {d.start}; the season sets the PV curves)")
    parser.add_argument("--energy-json", metavar="PATH", help="also write every figure as JSON here")


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings(args.energy_sites, args.energy_days, args.energy_seed, args.energy_start)


def command(args: argparse.Namespace) -> int:
    """Run, print the table and the chart; exit 1 if a goal is missed (the figures are printed anyway)."""
    try:
        settings = settings_of(args)
        result = run(settings, log=lambda text: print(text, file=sys.stderr, flush=True))
    except ValueError as exc:
        print(f"maillage bench --energy: {exc}", file=sys.stderr)
        return 2
    s, sc = result["settings"], result["scenario"]
    print(f"{s['sites']} sites, {s['days']} days from {s['start']} (seed {s['seed']}), PV: {result['pv_model']}; "
          f"{result['lost']} lost {_when(sc.lost_at)}; a rebalance to {len(result['receivers'])} site(s) "
          f"{_when(sc.rebalance_at)}")
    print(format_table(result))
    print()
    print(chart(result))
    if args.energy_json:
        with open(args.energy_json, "w") as f:
            json.dump(_json(result), f, indent=2, default=str)
    return 0 if all(v["ok"] for v in result["verdicts"]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.energy", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
