"""`maillage layout ...`: change the mesh in two steps, staged then applied.

Each edit command (add-site, site-energy, site-power, site-tier, add-node, set-capacity, drain, remove,
policy-set, policy-remove) reads the layout and the staged change from the endpoint, applies one pure edit from
`maillage.placement.changes` on top of what is staged, prints what `apply` would move (per policy:
partitions whose replica set changes, share of its data, and the ideal share), and stores the result
as the new staged change, signed with the cluster's layout-signing key, on every node. Nothing moves until
`apply`, which shows the whole diff and the movement, refuses while any existing bucket's policy
would become unsatisfiable, asks for confirmation, and pushes the layout as version current+1 to the
endpoint and then to every node (nodes also spread it by gossip; highest version wins).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from maillage.cli.admin import add_cluster_dir_option, node_keys, open_admin, parse_size, signer
from maillage.cli.common import CREDENTIALS_NOTE, CommandError, add_endpoint_option, table
from maillage.client.admin import ClusterAdmin, Staged, pin_layout
from maillage.placement import EDGE, TIERS, Layout, LayoutError, PlacementError, changes, format_location
from maillage.placement.layout_codec import format_capacity

_NOTE = ("Needs a profile with an admin access key. " + CREDENTIALS_NOTE + " Changes are signed with the "
         "cluster's layout-signing key, from the cluster dir (--cluster-dir DIR or $MAILLAGE_CLUSTER_DIR).")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "layout", help="show or change the layout: sites, nodes, policies (staged, then applied)",
        description="Show the layout, stage changes to it and apply them. Edits (add-site, add-node, "
                    "set-capacity, drain, remove, policy-set, policy-remove) accumulate in a staged "
                    "change and print what `apply` would move; `apply` makes them the next layout "
                    "version on every node; `revert` discards them. Retire hardware with `drain` "
                    "first (its data moves elsewhere), then `remove`. " + _NOTE)
    layout_sub = p.add_subparsers(dest="layout_command", required=True, metavar="ACTION")

    show = layout_sub.add_parser("show", help="print the current (or staged) layout",
                                 description="Print sites, nodes and policies of the current layout; "
                                             "with --staged, the staged change, its diff and movement.")
    show.add_argument("--staged", action="store_true", help="show the staged change instead")
    show.add_argument("--json", action="store_true", help="one JSON document instead of text")
    _common(show, secret=False)
    show.set_defaults(func=show_command)

    def edit(name: str, help_: str, description: str, build: Callable[[argparse.ArgumentParser], object],
             apply_edit: Callable[[Layout, argparse.Namespace], Layout], say: Callable[[argparse.Namespace], str]):
        e = layout_sub.add_parser(name, help=help_, description=description + " Staged only: run "
                                  "`maillage layout apply` to make it happen. " + _NOTE)
        build(e)
        _common(e)
        e.set_defaults(func=lambda args: stage_command(args, apply_edit, say(args)))

    edit("add-site", "stage a new site (a micro-datacenter at a location)",
         "Add site NAME at LOCATION (labels from wide to narrow, e.g. eu/fr/idf). A site holds no data "
         "until nodes are added to it.",
         lambda e: (e.add_argument("name", metavar="NAME"),
                    e.add_argument("--location", required=True, metavar="LOCATION",
                                   help="e.g. eu/fr/idf: where the site is (decides which policies allow it)"),
                    e.add_argument("--tier", choices=TIERS, default=EDGE,
                                   help="backbone: a 24/7 datacenter; edge: a proximity site (default)")),
         lambda layout, a: changes.add_site(layout, a.name, a.location, a.tier),
         lambda a: f"add {a.tier} site {a.name} at {a.location}")
    edit("site-tier", "stage a site's tier (backbone or edge)",
         "Make SITE a backbone site (one of the operator's 24/7 datacenters) or an edge site. A policy "
         "with --backbone N keeps exactly N of its copies on backbone sites inside its territory; "
         "`apply` shows what moves.",
         lambda e: (e.add_argument("site", metavar="SITE"), e.add_argument("tier", choices=TIERS)),
         lambda layout, a: changes.set_site_tier(layout, a.site, a.tier),
         lambda a: f"make {a.site} a {a.tier} site")
    edit("site-energy", "stage where a site reads its energy signal",
         "Set the energy source of SITE: file:/abs/path.json (a JSON file its building system rewrites), "
         "https://host/path (the same JSON from an endpoint), solar:lat=..,lon=..,peak_w=..[,load_w=..] "
         "[,carbon=..] (a clear-sky PV model, for demos), or none. Its nodes then run deferrable "
         "background work (scrub, GC, hand-back, rebalance) in green windows and stop it on a shed order.",
         lambda e: (e.add_argument("site", metavar="SITE"), e.add_argument("source", metavar="SOURCE|none")),
         lambda layout, a: changes.set_site_energy(layout, a.site, None if a.source == "none" else a.source),
         lambda a: f"set the energy source of {a.site} to {a.source}")
    edit("site-power", "stage the power figures of a site's servers",
         "Set what SITE's servers cost in energy, for the estimates in `maillage energy`, status and "
         "metrics: idle_w=WATTS,read_nj=..,write_nj=..,transfer_nj=.. (nanojoules per byte read from "
         "disk, written to disk, sent or received; any subset, the rest keep their defaults "
         "idle_w=40,read_nj=2,write_nj=5,transfer_nj=20), or none for the defaults.",
         lambda e: (e.add_argument("site", metavar="SITE"), e.add_argument("figures", metavar="FIGURES|none")),
         lambda layout, a: changes.set_site_power(layout, a.site, None if a.figures == "none" else a.figures),
         lambda a: f"set the power figures of {a.site} to {a.figures}")
    edit("add-node", "stage a new node on a site",
         "Add node ID, reachable at HOST:PORT, on site S, with a capacity (bytes or a size: 4TB, 500GiB, "
         "4T = 4TB). Its share of each policy it falls in is proportional to its capacity.",
         lambda e: (e.add_argument("id", metavar="ID"),
                    e.add_argument("--address", required=True, metavar="HOST:PORT"),
                    e.add_argument("--site", required=True, metavar="SITE"),
                    e.add_argument("--capacity", required=True, metavar="SIZE", help="e.g. 4T, 4TB, 500GiB")),
         _add_node,
         lambda a: f"add node {a.id} on {a.site} at {a.address}, {a.capacity}")
    edit("set-capacity", "stage a node's new capacity",
         "Set the capacity of NODE (bytes or a size: 8TB, 8T, 7TiB). Partitions move to or from it "
         "in proportion.",
         lambda e: (e.add_argument("node", metavar="NODE"), e.add_argument("capacity", metavar="SIZE")),
         lambda layout, a: changes.set_capacity(layout, a.node, parse_size(a.capacity)),
         lambda a: f"set capacity of {a.node} to {a.capacity}")
    edit("drain", "stage draining a node or a whole site",
         "Mark NODE, or every node of SITE, as draining: it leaves every policy ring, so its partitions "
         "move to other nodes, while it keeps serving reads. Remove it once repair has moved its data.",
         lambda e: e.add_argument("target", metavar="NODE|SITE"),
         lambda layout, a: changes.drain(layout, a.target),
         lambda a: f"drain {a.target}")
    edit("remove", "stage removing a drained node or site",
         "Remove NODE, or SITE with all its nodes. Only drained nodes can be removed: drain first.",
         lambda e: e.add_argument("target", metavar="NODE|SITE"),
         lambda layout, a: changes.remove(layout, a.target),
         lambda a: f"remove {a.target}")
    edit("policy-set", "stage a new residency policy or a new rule for one",
         "Define policy NAME: data of its buckets rests only under the --allow location prefixes, "
         "in --replicas copies on distinct sites, preferring distinct --spread domains (the first N "
         "labels of the location), --backbone of them on backbone sites (exactly; the others on edge "
         "sites; a layout without enough of either is refused). --cold names the policy a lifecycle "
         "Transition moves an object's chunks to (inside this one's territory, at least as many copies; "
         "e.g. every copy on the backbone; kept once set). For an existing policy, options not "
         "given keep their value.",
         lambda e: (e.add_argument("name", metavar="NAME"),
                    e.add_argument("--allow", action="append", metavar="PREFIX",
                                   help="a location prefix, e.g. eu/fr (repeatable)"),
                    e.add_argument("--replicas", type=int, metavar="R", help="copies, >= 2 (default 2)"),
                    e.add_argument("--spread", type=int, metavar="N",
                                   help="keep copies in distinct domains of N labels when possible"),
                    e.add_argument("--backbone", type=int, metavar="N",
                                   help="copies on backbone sites, 0..R (default 0: any tier)"),
                    e.add_argument("--cold", metavar="POLICY",
                                   help="where cold objects' chunks move (a policy inside this one)")),
         _policy_set,
         lambda a: f"set policy {a.name}")
    edit("policy-remove", "stage removing a policy no bucket uses",
         "Remove policy NAME. `apply` refuses while a bucket is bound to it.",
         lambda e: e.add_argument("name", metavar="NAME"),
         lambda layout, a: changes.policy_remove(layout, a.name),
         lambda a: f"remove policy {a.name}")

    edit("pin", "stage pinning every node's recorded certificate key",
         "Pin, in the staged change, the certificate key the cluster dir records for each node "
         "(`maillage cluster node-cert` records the key of each certificate it issues, `maillage "
         "cluster pin` one issued earlier). Nodes then accept a caller as a node only with the "
         "certificate whose key the layout pins for it: a certificate made with the CA key alone is "
         "refused. To rotate a node's certificate: `maillage cluster node-cert NODE`, then `pin` and "
         "`apply` (the old certificate is refused from then on), then restart the node with its new "
         "trust dir. Every other staged change pins the recorded keys too.",
         lambda e: None, _pin_all, lambda a: "pin the recorded node certificate keys")

    apply_p = layout_sub.add_parser(
        "apply", help="apply the staged change as the next layout version",
        description="Show the staged change (diff against the current layout and what moves, per "
                    "policy and per node) and apply it as version current+1 on every node. Refused, "
                    "with the list of buckets concerned, if any existing bucket's policy would become "
                    "unsatisfiable. Asks for confirmation unless --yes. " + _NOTE)
    apply_p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _common(apply_p)
    apply_p.set_defaults(func=apply_command)

    sign = layout_sub.add_parser(
        "sign", help="sign a layout file for the nodes' first start",
        description="Sign LAYOUT.toml (sites, nodes, policies; version inside) with the cluster's "
                    "layout-signing key and write it to --out: the file to give `maillage node run "
                    "--layout` when a mesh starts for the first time. Later changes go through "
                    "`maillage layout add-node ... / apply` on the running mesh. The certificate keys "
                    "the cluster dir records (`maillage cluster node-cert`) are pinned for its nodes, "
                    "once one is recorded for every node. Needs no node.")
    sign.add_argument("layout_file", metavar="LAYOUT.toml", type=Path)
    sign.add_argument("--out", required=True, type=Path, metavar="SIGNED", help="the signed layout file to write")
    add_cluster_dir_option(sign)
    sign.set_defaults(func=sign_command)

    revert = layout_sub.add_parser("revert", help="discard the staged change",
                                   description="Discard the staged change on every node. " + _NOTE)
    _common(revert)
    revert.set_defaults(func=revert_command)


def _common(parser: argparse.ArgumentParser, *, secret: bool = True) -> None:
    add_endpoint_option(parser)
    if secret:
        add_cluster_dir_option(parser)


def _policy_set(layout: Layout, a: argparse.Namespace) -> Layout:
    existing = next((p for p in layout.policies if p.name == a.name), None)
    if existing is None and not a.allow:
        raise CommandError(f"policy {a.name!r} is new: give at least one --allow PREFIX")
    if existing is not None and not a.allow:
        allow = ["/".join(x) for x in existing.allow]
    else:
        allow = a.allow
    replicas = a.replicas if a.replicas is not None else (existing.replicas if existing else 2)
    spread = a.spread if a.spread is not None else (existing.spread if existing else None)
    backbone = a.backbone if a.backbone is not None else (existing.backbone if existing else 0)
    cold = a.cold if a.cold is not None else (existing.cold if existing else "")
    return changes.policy_set(layout, a.name, allow, replicas, spread, backbone, cold)


def _add_node(layout: Layout, a: argparse.Namespace) -> Layout:
    """add-node, with the node's recorded certificate key when the layout pins its nodes' keys (a
    layout that pins none is pinned with all its nodes at once, by `pin_layout`)."""
    key = node_keys(a).get(a.id) if layout.pins_keys else None
    try:
        return changes.add_node(layout, a.id, a.address, a.site, parse_size(a.capacity), cert_key=key)
    except LayoutError as exc:
        if layout.pins_keys and key is None and "cert_key" in str(exc):
            raise CommandError(f"add node {a.id}: the layout pins every node's certificate key and none is "
                               f"recorded for {a.id}: issue its certificate first (`maillage cluster "
                               f"node-cert {a.id} --out DIR`)") from None
        raise


def _pin_all(layout: Layout, a: argparse.Namespace) -> Layout:
    pinned, warnings = pin_layout(layout, node_keys(a))
    if warnings:
        raise CommandError("; ".join(warnings))
    return pinned


# ----- staging --------------------------------------------------------------------------------

def _base(admin: ClusterAdmin) -> tuple[Layout, Staged | None]:
    """What the next edit builds on: the staged layout if any (and still current), else the current."""
    staged = admin.staged()
    if staged is None:
        return admin.layout, None
    if staged.base_version != admin.layout.version:
        raise CommandError(f"the staged change was prepared against layout v{staged.base_version}, "
                           f"but the current layout is v{admin.layout.version}: run `maillage layout "
                           "revert` and stage it again")
    return staged.layout, staged


def stage_command(args: argparse.Namespace, apply_edit: Callable[[Layout, argparse.Namespace], Layout],
                  what: str) -> int:
    admin = open_admin(args, signing=True)
    base, staged = _base(admin)
    try:
        new = apply_edit(base, args)
    except PlacementError as exc:
        raise CommandError(f"{what}: {exc}") from None
    current = admin.layout
    new, warnings = admin.pinned(new)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if new == base:
        print(f"{what}: nothing changes (already so{' in the staged change' if staged else ''})")
        return 0
    problems = admin.stage(new)
    print(f"staged: {what}  (on top of layout v{current.version}; nothing moves until "
          "`maillage layout apply`, `maillage layout revert` discards)")
    diff = changes.layout_diff(current, new)
    if len(diff) > 1:
        print("staged change so far:")
        for line in diff:
            print(f"  {line}")
    _print_movement(changes.movement(current, new))
    _warn_stranded(admin, new)
    for problem in problems:
        print(f"warning: not staged on {problem}", file=sys.stderr)
    return 0


def _warn_stranded(admin: ClusterAdmin, new: Layout) -> None:
    try:
        stranded = changes.unsatisfiable_buckets(new, admin.buckets())
    except CommandError as exc:
        print(f"warning: could not check the buckets: {exc}", file=sys.stderr)
        return
    for u in stranded:
        print(f"warning: bucket {u.bucket}: {u.reason}; `apply` will refuse this change", file=sys.stderr)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _print_movement(report: changes.MovementReport, *, per_node: bool = False) -> None:
    print("what `apply` would move, per policy:")
    rows = []
    for m in report.policies:
        moved = f"{m.changed}/{m.partitions}"
        rows.append([m.policy, m.status, moved, _pct(m.fraction), _pct(m.ideal)])
    print(table(rows, header=["policy", "status", "partitions", "data moved", "ideal"], indent="  ",
                right=(2, 3, 4)))
    for m in report.policies:
        if m.reason:
            print(f"  !! {m.policy}: {m.reason}")
        if per_node and (m.gained or m.lost):
            nodes = sorted(set(m.gained) | set(m.lost))
            deltas = ", ".join(f"{n} +{m.gained.get(n, 0)}/-{m.lost.get(n, 0)}" for n in nodes)
            print(f"  {m.policy}: replica slots per node: {deltas}")


# ----- apply, revert, show ---------------------------------------------------------------------

def apply_command(args: argparse.Namespace) -> int:
    admin = open_admin(args, signing=True)
    base, staged = _base(admin)
    if staged is None:
        raise CommandError("nothing is staged: stage a change first (e.g. `maillage layout drain NODE`)")
    current = admin.layout
    base, warnings = admin.pinned(base)   # a key recorded since the change was staged (a rotation)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    diff = changes.layout_diff(current, base)
    print(f"staged change against layout v{current.version}:")
    for line in diff or ["(no difference)"]:
        print(f"  {line}")
    _print_movement(changes.movement(current, base), per_node=True)
    changes.check_cold_links(current, base)
    stranded = changes.unsatisfiable_buckets(base, admin.buckets())
    if stranded:
        print("refused: existing buckets would have a policy the new layout cannot meet:", file=sys.stderr)
        for u in stranded:
            print(f"  {u.bucket} (policy {u.policy}): {u.reason}", file=sys.stderr)
        raise CommandError(f"not applied: {len(stranded)} bucket(s) would be stranded "
                           f"({', '.join(u.bucket for u in stranded)})")
    if not diff:
        raise CommandError("the staged change changes nothing: `maillage layout revert` discards it")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("not applied: confirm with --yes (no terminal to ask on)")
        answer = input(f"apply as layout v{current.version + 1}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not applied; the change stays staged")
            return 1
    new = changes.bump(base, current.version + 1)
    adopted, problems = admin.push(new)
    total = len({n.address for n in current.nodes} | {n.address for n in new.nodes})
    print(f"applied layout v{new.version}: adopted by {adopted} of {total} node(s) directly; "
          "the others learn it by gossip")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def revert_command(args: argparse.Namespace) -> int:
    admin = open_admin(args, signing=True)
    staged = admin.staged()
    if staged is None:
        print("nothing is staged")
        return 0
    problems = admin.clear_staged()
    diff = changes.layout_diff(admin.layout, staged.layout)
    print(f"discarded the staged change ({len(diff)} difference(s) from layout v{admin.layout.version}):")
    for line in diff:
        print(f"  {line}")
    for problem in problems:
        print(f"warning: not cleared on {problem}", file=sys.stderr)
    return 0


def sign_command(args: argparse.Namespace) -> int:
    from maillage.client.admin import write_signed_layout
    from maillage.placement import parse_layout

    key = signer(args)
    try:
        layout = parse_layout(args.layout_file.read_text(encoding="utf-8"))
        layout, warnings = pin_layout(layout, node_keys(args))
    except OSError as exc:
        raise CommandError(f"{args.layout_file}: {exc.strerror}") from None
    except PlacementError as exc:
        raise CommandError(f"{args.layout_file}: {exc}") from None
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    write_signed_layout(args.out, layout, key)
    print(f"signed layout v{layout.version} ({len(layout.sites)} site(s), {len(layout.nodes)} node(s)) "
          f"into {args.out}; start each node with `maillage node run --id ID --data-dir DIR "
          f"--trust-dir TRUST --layout {args.out}`")
    return 0


def layout_doc(layout: Layout) -> dict:
    return {
        "version": layout.version, "partition_bits": layout.partition_bits,
        "sites": [{"name": s.name, "location": format_location(s.location), "tier": s.tier} for s in layout.sites],
        "nodes": [{"id": n.id, "site": n.site, "address": n.address, "capacity": n.capacity,
                   "state": n.state.value, "cert_key": n.cert_key} for n in layout.nodes],
        "policies": [{"name": p.name, "allow": [format_location(a) for a in p.allow], "replicas": p.replicas,
                      "spread": p.spread, "backbone": p.backbone, "cold": p.cold,
                      "eligible_sites": len({n.site for n in layout.eligible_nodes(p.name)})}
                     for p in layout.policies],
    }


def show_command(args: argparse.Namespace) -> int:
    admin = open_admin(args)
    current = admin.layout
    if not args.staged:
        _show(layout_doc(current), args.json, f"layout v{current.version} (from {admin.address})")
        return 0
    staged = admin.staged()
    if staged is None:
        if args.json:
            print(json.dumps({"staged": None, "current_version": current.version}))
        else:
            print(f"nothing is staged (current layout v{current.version})")
        return 0
    report = changes.movement(current, staged.layout) if staged.base_version == current.version else None
    if args.json:
        doc = {"staged": layout_doc(staged.layout), "base_version": staged.base_version,
               "current_version": current.version, "diff": changes.layout_diff(current, staged.layout),
               "movement": [vars(m) for m in report.policies] if report else None}
        print(json.dumps(doc, indent=2))
        return 0
    _show(layout_doc(staged.layout), False, f"staged change on top of layout v{staged.base_version}")
    print("\ndiff against the current layout:")
    for line in changes.layout_diff(current, staged.layout) or ["(no difference)"]:
        print(f"  {line}")
    if report is None:
        print(f"stale: the current layout is v{current.version}; `maillage layout revert` and stage again")
    else:
        _print_movement(report)
    return 0


def _show(doc: dict, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{title}: {len(doc['sites'])} site(s), {len(doc['nodes'])} node(s), "
          f"2^{doc['partition_bits']} partitions")
    nodes_by_site: dict[str, list[dict]] = {}
    for n in doc["nodes"]:
        nodes_by_site.setdefault(n["site"], []).append(n)
    rows = []
    for s in doc["sites"]:
        on_site: list[dict | None] = list(nodes_by_site.get(s["name"], ())) or [None]
        for n in on_site:
            rows.append([s["name"], s["location"], s["tier"], n["id"] if n else "(no node)",
                         n["address"] if n else "", str(format_capacity(n["capacity"])) if n else "",
                         n["state"] if n else ""])
    print(table(rows, header=["site", "location", "tier", "node", "address", "capacity", "state"], indent="  ",
                right=(5,)))
    print("policies:")
    rows = [[p["name"], ", ".join(p["allow"]), f"R={p['replicas']}",
             "" if p["spread"] is None else f"spread {p['spread']}",
             f"{p['backbone']} on backbone" if p["backbone"] else "", f"cold: {p['cold']}" if p["cold"] else "",
             f"{p['eligible_sites']} eligible site(s)"]
            for p in doc["policies"]]
    print(table(rows, indent="  ") if rows else "  (none)")
