"""`maillage status` and `maillage repair`: how every node sees the mesh, and repair progress.

Both ask every node of the layout for its `NodeStatus` at once, at most 64 calls in flight, each
with its own deadline (a node that does not answer is shown as unreachable, never hidden). A node's
own view of its peers comes from gossip, so the `peers` column says how many of them it currently
believes up / suspect / down.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from maillage.cli.common import CREDENTIALS_NOTE, CommandError, add_endpoint_option, human_size, profile_of, table
from maillage.client.admin import ClusterAdmin, NodeAnswers, repair_fields, status_rows
from maillage.placement import Node

WATCH_PERIOD = 1.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(
        "status", help="every site and node: up/suspect/down, capacity, use, repair",
        description="Ask every node of the layout for its status: the state its peers see it in, "
                    "capacity and disk use, partitions still being repaired (behind), hinted items "
                    "waiting for hand-back, scrub findings. Exits 1 if a node is unreachable. Needs an admin "
                    "access key. " + CREDENTIALS_NOTE)
    add_endpoint_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long each node has to answer before it is shown unreachable (default: 5); "
                             "every node is asked at once (64 at a time)")
    status.set_defaults(func=status_command)

    repair = sub.add_parser(
        "repair", help="start a repair round on every node now, and/or watch its progress",
        description="Repair runs by itself (every --repair-interval of each node). This command "
                    "asks every node to start a round now (--now) and shows progress with an ETA; "
                    "--wait keeps watching until every node has finished a round with nothing "
                    "left behind. Needs an admin access key. " + CREDENTIALS_NOTE)
    add_endpoint_option(repair)
    repair.add_argument("--now", action="store_true", help="start a round on every node now")
    repair.add_argument("--wait", action="store_true", help="watch until the mesh has caught up")
    repair.add_argument("--timeout", type=float, default=600.0, help="give up waiting after this (s)")
    repair.add_argument("--json", action="store_true", help="machine-readable output")
    repair.set_defaults(func=repair_command)


# ----- collecting -----------------------------------------------------------------------------

def _ask(args: argparse.Namespace, start_now: bool | None = None) -> tuple[list[Node], NodeAnswers]:
    """(layout nodes, node id -> reply or why none): statuses, or repair progress when start_now is
    given."""
    with ClusterAdmin(profile_of(args)) as admin:
        if start_now is None:
            answers = admin.statuses(timeout=args.timeout)
        else:
            answers = admin.repair(start_now=start_now)
        return list(admin.layout.nodes), answers


# ----- commands -------------------------------------------------------------------------------

def status_command(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        raise CommandError(f"--timeout must be positive (got {args.timeout})")
    nodes, answers = _ask(args)
    rows = status_rows(nodes, answers)
    if args.json:
        json.dump({"nodes": rows}, sys.stdout, indent=2)
        print()
    else:
        print(render_status(rows))
    return 0 if all(r["reachable"] for r in rows) else 1


def lifecycle_note(c: dict) -> str:
    """`lifecycle 3 expired, 1 kept by lock; ` once a lifecycle sweep removed or kept anything."""
    done = [f"{c[name]} {words}" for name, words in (
        ("expired", "expired"), ("noncurrent_removed", "noncurrent removed"), ("markers_removed", "markers removed"),
        ("uploads_aborted", "uploads aborted"), ("kept_by_lock", "kept by lock"),
        ("transitioned", "moved to a cold class")) if c[name]]
    return f"lifecycle {', '.join(done)}; " if done else ""


def energy_note(e: dict) -> str:
    """`energy green +1200 W 45 g/kWh`, and the kinds of background work deferred right now."""
    parts = [f"energy {e['state']}"]
    if e["surplus_w"] is not None:
        parts.append(f"{e['surplus_w']:+.0f} W")
    if e["carbon_g_per_kwh"] is not None:
        parts.append(f"{e['carbon_g_per_kwh']:.0f} g/kWh")
    moved = sum(v["bytes"] for v in e["kinds"].values())
    if moved:
        joules = sum(v["joules"] for v in e["kinds"].values())
        green = sum(v["green_bytes"] for v in e["kinds"].values())
        parts.append(f"background {joules:.3g} J est., {100 * green / moved:.0f}% of bytes green")
    waiting = sorted(k for k, v in e["kinds"].items() if v["waiting"])
    if waiting:
        parts.append("deferred: " + ",".join(waiting))
    return " ".join(parts)


def render_status(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if not r["reachable"]:
            lines.append([r["site"], r["node"], r["state"], r["seen_as"], human_size(r["capacity"]),
                          "-", "-", "-", "-", r["error"]])
            continue
        rep = r["repair"]
        p = r["peers"]
        lines.append([
            r["site"], r["node"], r["state"], r["seen_as"], human_size(r["capacity"]),
            human_size(r["stored_bytes"]), f"{p['up']}/{p['suspect']}/{p['down']}",
            str(rep["behind"]), str(rep["handoff_items"]),
            f"scrub {r['scrub']['frames_checked']} checked, {r['scrub']['corrupt_found']} corrupt; "
            f"{lifecycle_note(r['lifecycle'])}{energy_note(r['energy'])}"])
    under = sum(r["repair"]["behind"] for r in rows if r["reachable"])
    text = table(lines, header=["SITE", "NODE", "LAYOUT", "SEEN", "CAPACITY", "STORED", "PEERS U/S/D",
                                "BEHIND", "HINTED", "NOTES"], right=(4, 5, 7, 8))
    unreachable = sum(not r["reachable"] for r in rows)
    return (f"{text}\n\n{len(rows)} node(s), {unreachable} unreachable; "
            f"{under} partition group(s) found behind in the last repair rounds")


def repair_command(args: argparse.Namespace) -> int:
    nodes, answers = _ask(args, start_now=args.now)
    if not args.wait:
        _print_repair(nodes, answers, args.json)
        return 0 if all(not isinstance(a, str) for a in answers.values()) else 1
    start_rounds = {n: a.rounds_completed for n, a in answers.items() if not isinstance(a, str)}
    deadline = time.monotonic() + args.timeout
    while True:
        time.sleep(WATCH_PERIOD)
        nodes, answers = _ask(args, start_now=False)
        replies = {n: a for n, a in answers.items() if not isinstance(a, str)}
        done = sum(a.groups_done for a in replies.values())
        total = sum(a.groups_total for a in replies.values()) or 1
        eta = max((a.eta_seconds for a in replies.values()), default=0.0)
        copied = sum(a.bytes_copied for a in replies.values())
        caught_up = all(a.rounds_completed > start_rounds.get(n, 0) + 1 and not a.groups_behind
                        and not a.handoff_items for n, a in replies.items())
        if not args.json:
            print(f"repair: {done}/{total} groups this round, {human_size(copied)} copied, "
                  f"ETA {eta:.0f} s, {len(answers) - len(replies)} unreachable", file=sys.stderr)
        if caught_up and len(replies) == len(answers):
            _print_repair(nodes, answers, args.json)
            return 0
        if time.monotonic() > deadline:
            _print_repair(nodes, answers, args.json)
            print(f"maillage: the mesh has not caught up after {args.timeout:.0f} s", file=sys.stderr)
            return 1


def _print_repair(nodes, answers, as_json: bool) -> None:
    rows = []
    for node in nodes:
        a = answers[node.id]
        if isinstance(a, str):
            rows.append({"node": node.id, "error": a})
        else:
            rows.append({"node": node.id, **repair_fields(a)})
    if as_json:
        json.dump({"nodes": rows}, sys.stdout, indent=2)
        print()
        return
    print(table([[r["node"], *(["unreachable", r["error"]] if "error" in r else [
        "running" if r["running"] else "idle", str(r["rounds"]), f"{r['groups_done']}/{r['groups_total']}",
        str(r["behind"]), str(r["handoff_items"]), human_size(r["bytes_copied"]), f"{r['eta_seconds']:.0f} s"])]
        for r in rows], header=["NODE", "STATE", "ROUNDS", "GROUPS", "BEHIND", "HINTED", "COPIED", "ETA"]))
