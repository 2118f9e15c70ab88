"""`maillage energy`: every site's energy state and what its background work did, for the mesh.

Built on the same answers as `maillage status` (every node's `NodeStatus`, asked at once, each with
its own deadline; its `EnergyStatus` is the node's `EnergyScheduler` as it stands), gathered per
site, since a site's nodes read one energy source: its state, surplus and carbon, the kinds of work
deferred now, the bytes each kind moved, the share of deferrable bytes moved in green windows, and
the estimated energy (the node's power model), then the mesh's totals. A node that does not answer
is a row saying so; the command fails only when no node answers, since the report is about energy,
not about which node is down (`maillage status` says that, and exits 1 for it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from typing import Any

from maillage.cli.common import CREDENTIALS_NOTE, CommandError, add_endpoint_option, human_size, profile_of, table

__all__ = ["add_parser", "energy_command", "site_reports", "mesh_totals", "render_energy"]

BYTE_KINDS = ("urgent-repair", "rebalance", "hand-back", "scrub", "tier-move")   # the kinds that move bytes
PASS_KINDS = ("gc", "expiry")                                       # passes of no bytes
STATES = ("green", "grey", "shed", "unknown")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "energy", help="every site's energy state, deferred work, and background bytes moved in green windows",
        description="Ask every node of the layout for its status and report, per site: the energy state its "
                    "nodes read (green: PV surplus or a low-carbon grid; grey; shed: a demand-response order "
                    "stops deferrable work; unknown: no source or a broken one, work runs as before energy was "
                    "known), the surplus and grid carbon, the kinds of background work deferred right now, the "
                    "bytes each kind moved since the nodes started (urgent repair never waits; rebalance, "
                    "hand-back and scrub are deferrable; GC and expiry passes are counted in the notes), the "
                    "share of deferrable bytes moved in green windows (a node counts a window with an unknown "
                    "signal as green, so sites without a source show '-'), and the energy of that work as the "
                    "node's power model estimates it; then the mesh's totals. A node that does not answer is "
                    "shown; the exit code is 1 only when no node answers. Needs an admin access key. "
                    + CREDENTIALS_NOTE)
    add_endpoint_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (the sites and the mesh's totals)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long each node has to answer before it is shown unreachable (default: 5)")
    p.set_defaults(func=energy_command)


def energy_command(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        raise CommandError(f"--timeout must be positive (got {args.timeout})")
    from maillage.client.admin import ClusterAdmin, status_rows

    with ClusterAdmin(profile_of(args)) as admin:
        answers = admin.statuses(timeout=args.timeout)
        rows = status_rows(list(admin.layout.nodes), answers)
    sites = site_reports(rows)
    totals = mesh_totals(sites)
    if args.json:
        json.dump({"sites": sites, "mesh": totals}, sys.stdout, indent=2)
        print()
    else:
        print(render_energy(sites, totals))
    return 0 if totals["nodes_answered"] else 1


def site_reports(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`maillage status`'s node rows gathered per site (in the rows' order)."""
    by_site: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_site[row["site"]].append(row)
    return [_site(name, members) for name, members in by_site.items()]


def _site(name: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in members if r["reachable"]]
    energies = [r["energy"] for r in answered]
    states = sorted({e["state"] for e in energies}, key=STATES.index)
    moved = {k: 0 for k in (*BYTE_KINDS, *PASS_KINDS)}
    turns = dict.fromkeys(PASS_KINDS, 0)
    deferrable = green = 0
    joules = green_joules = 0.0
    waiting: set[str] = set()
    for e in energies:
        for kind, v in e["kinds"].items():
            moved[kind] = moved.get(kind, 0) + v["bytes"]
            if kind in turns:
                turns[kind] += v["turns"]
            joules += v["joules"]
            green_joules += v["green_joules"]
            if v["waiting"]:
                waiting.add(kind)
            if kind != "urgent-repair" and e["source"] != "none":
                deferrable += v["bytes"]
                green += v["green_bytes"]
    first = next((e for e in energies if e["surplus_w"] is not None or e["carbon_g_per_kwh"] is not None), None)
    return {
        "site": name, "nodes": len(members), "answered": len(answered),
        "state": "/".join(states) if states else "unreachable",
        "sources": sorted({e["source"] for e in energies}),
        "surplus_w": first["surplus_w"] if first else None,
        "carbon_g_per_kwh": first["carbon_g_per_kwh"] if first else None,
        "deferred": sorted(waiting), "bytes": {k: moved[k] for k in BYTE_KINDS}, "passes": turns,
        "deferrable_bytes": deferrable, "green_bytes": green,
        "green_share": green / deferrable if deferrable else None,
        "joules": joules, "green_joules": green_joules,
        "next_green": min((e["next_green"] for e in energies if e["next_green"]), default=None),
        "problems": sorted({e["problem"] for e in energies if e["problem"]}),
        "unreachable": {r["node"]: r["error"] for r in members if not r["reachable"]},
    }


def mesh_totals(sites: list[dict[str, Any]]) -> dict[str, Any]:
    """The mesh's sums: sites by state, nodes answered, bytes per kind, green share, energy."""
    deferrable = sum(s["deferrable_bytes"] for s in sites)
    green = sum(s["green_bytes"] for s in sites)
    by_state: dict[str, int] = defaultdict(int)
    for s in sites:
        by_state[s["state"]] += 1
    return {
        "sites": len(sites), "sites_by_state": dict(by_state),
        "nodes": sum(s["nodes"] for s in sites), "nodes_answered": sum(s["answered"] for s in sites),
        "bytes": {k: sum(s["bytes"][k] for s in sites) for k in BYTE_KINDS},
        "passes": {k: sum(s["passes"][k] for s in sites) for k in PASS_KINDS},
        "deferrable_bytes": deferrable, "green_bytes": green, "green_share": green / deferrable if deferrable else None,
        "joules": sum(s["joules"] for s in sites), "green_joules": sum(s["green_joules"] for s in sites),
    }


def _joules(j: float) -> str:
    for unit, size in (("MJ", 1e6), ("kJ", 1e3)):
        if j >= size:
            return f"{j / size:.1f} {unit}"
    return f"{j:.1f} J" if j >= 0.1 else ("0 J" if j == 0 else f"{j * 1e3:.1f} mJ")


def _share(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def _notes(s: dict[str, Any]) -> str:
    notes = []
    if s["passes"]["gc"] or s["passes"]["expiry"]:
        notes.append(f"passes gc {s['passes']['gc']}, expiry {s['passes']['expiry']}")
    if s["next_green"] and s["state"] in ("grey", "shed"):
        notes.append(f"next green {time.strftime('%H:%M', time.localtime(s['next_green']))}")
    notes += [f"signal: {p}" for p in s["problems"]]
    notes += [f"{node}: {why}" for node, why in s["unreachable"].items()]  # why: "unreachable (...)"
    return "; ".join(notes)


def render_energy(sites: list[dict[str, Any]], totals: dict[str, Any]) -> str:
    lines = []
    for s in sites:
        if not s["answered"]:
            lines.append([s["site"], f"0/{s['nodes']}", "unreachable", *["-"] * 11, _notes(s)])
            continue
        lines.append([
            s["site"], f"{s['answered']}/{s['nodes']}", s["state"], ",".join(s["sources"]) or "-",
            "-" if s["surplus_w"] is None else f"{s['surplus_w']:+.0f} W",
            "-" if s["carbon_g_per_kwh"] is None else f"{s['carbon_g_per_kwh']:.0f} g/kWh",
            ",".join(s["deferred"]) or "-", *(human_size(s["bytes"][k]) for k in BYTE_KINDS),
            _share(s["green_share"]), _joules(s["joules"]), _notes(s)])
    text = table(lines, header=["SITE", "NODES", "STATE", "SOURCE", "SURPLUS", "CARBON", "DEFERRED", "URGENT",
                                "REBALANCE", "HAND-BACK", "SCRUB", "TIER-MOVE", "GREEN", "ENERGY", "NOTES"],
                 right=(4, 5, 7, 8, 9, 10, 11, 12, 13))
    t = totals
    by_state = t["sites_by_state"]
    states = ", ".join(f"{by_state[st]} {st}" for st in (*STATES, "unreachable") if by_state.get(st))
    mixed = sum(n for st, n in by_state.items() if "/" in st)
    if mixed:
        states += f", {mixed} mixed"
    moved = ", ".join(f"{k} {human_size(t['bytes'][k])}" for k in BYTE_KINDS)
    return (f"{text}\n\nmesh: {t['sites']} site(s) ({states}), {t['nodes_answered']}/{t['nodes']} node(s) answered; "
            f"moved {moved}; passes gc {t['passes']['gc']}, expiry {t['passes']['expiry']}\n"
            f"deferrable bytes in green windows: {_share(t['green_share'])} (sites with a source); "
            f"estimated energy of background work {_joules(t['joules'])}, "
            f"{_share(t['green_joules'] / t['joules'] if t['joules'] else None)} of it in green or unknown windows")
