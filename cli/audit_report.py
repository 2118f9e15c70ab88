"""`maillage audit verify|render`: check a signed residency report offline, and render it as HTML.

Both read only the report file and the cluster's public layout-signing key (`--cluster-public`, a
PEM file or a trust dir holding ``layout-signing.pub``; by default the profile's trust dir): no
node, no network. The report model and its signature are `maillage.client.admin._report`.
"""

from __future__ import annotations

import argparse
import html
import os
from pathlib import Path
from typing import Any

from maillage.cli.common import CommandError, profile_of
from maillage.client.admin import ReportError, VerifiedReport, verify_report
from maillage.proto.trust.signing import LayoutVerifier, write_durably

PUBLIC_KEY_FILE = "layout-signing.pub"


def add_public_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster-public", metavar="PATH",
                   help="the cluster's public layout-signing key: a PEM file, or a trust dir or cluster dir "
                        f"holding {PUBLIC_KEY_FILE} (default: $MAILLAGE_TRUST_DIR, else the profile's trust dir)")
    p.add_argument("--profile", metavar="NAME", help="the profile whose trust dir holds the public key")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("verify", help="check a signed residency report offline",
                       description="Check a report written by `maillage audit --report` with the cluster's public "
                                   "key only (no node is asked). Exit 0 and a summary when the report is whole and "
                                   "signed by this cluster; 1 when it is altered, truncated, malformed or signed by "
                                   "another key.")
    v.add_argument("file", metavar="FILE")
    add_public_option(v)
    v.set_defaults(func=run_verify)
    r = sub.add_parser("render", help="render a signed residency report as a self-contained HTML page",
                       description="Verify a report (as `maillage audit verify`) and write it as one HTML page "
                                   "(no script, no external resource).")
    r.add_argument("file", metavar="FILE")
    r.add_argument("--html", required=True, metavar="OUT", help="where to write the page")
    add_public_option(r)
    r.set_defaults(func=run_render)


def cluster_verifier(args: argparse.Namespace) -> LayoutVerifier:
    """The public key named by --cluster-public, $MAILLAGE_TRUST_DIR or the profile's trust dir."""
    given = getattr(args, "cluster_public", None)
    if given:
        path = Path(given)
    elif os.environ.get("MAILLAGE_TRUST_DIR"):
        path = Path(os.environ["MAILLAGE_TRUST_DIR"])
    else:
        try:
            path = Path(profile_of(args).trust_dir)
        except CommandError:
            raise CommandError("no cluster public key: give --cluster-public (the cluster's "
                               f"{PUBLIC_KEY_FILE}, or a trust dir holding it)") from None
    if path.is_dir():
        path = path / PUBLIC_KEY_FILE
    try:
        return LayoutVerifier.from_file(path)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def read_verified(args: argparse.Namespace) -> VerifiedReport:
    verifier = cluster_verifier(args)
    try:
        with open(args.file, "rb") as f:
            data = f.read(1 << 25)
    except OSError as exc:
        raise CommandError(f"{args.file}: {exc.strerror}") from None
    try:
        return verify_report(data, verifier)
    except ReportError as exc:
        raise CommandError(f"{args.file}: REFUSED: {exc}") from None


def summary(verified: VerifiedReport) -> str:
    b = verified.body
    t = b["totals"]
    lines = [f"valid: signed by this cluster's key {verified.signer}",
             f"  audit of layout v{b['layout']['version']} ({b['layout']['digest']}), "
             f"{b['started']} to {b['finished']}",
             f"  nodes             {t['answered']} of {t['nodes']} answered",
             f"  objects           {t['objects']} live key(s) in {t['buckets']} bucket(s); {t['copies']} copies "
             f"on {t['sites']} site(s)",
             f"  violations        {t['violations']}",
             f"  under-replicated  {t['under_replicated']}"]
    for p in b["policies"]:
        lines.append(f"  policy {p['policy']:<16} {p['verdict']:<25} {p['objects']} object(s), {p['copies']} copies, "
                     f"{p['sites']} site(s), {p['under_replicated']} under-replicated, {p['violations']} violation(s)")
    lines.append(f"verdict: {b['verdict']}")
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    print(summary(read_verified(args)))
    return 0


def run_render(args: argparse.Namespace) -> int:
    verified = read_verified(args)
    try:
        write_durably(args.html, render_html(verified))
    except OSError as exc:
        raise CommandError(f"{args.html}: {exc.strerror}") from None
    print(f"wrote {args.html} (report verified: signed by {verified.signer})")
    return 0


# ----- HTML ------------------------------------------------------------------------------------

_STYLE = """
body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}th{background:#eee}td.n{text-align:right}
.verdict{padding:.6em 1em;font-weight:bold;font-size:1.2em}.violation{background:#f6c6c6}
.inside-policy{background:#c8ecc8}.inside-policy-incomplete{background:#f8e7b0}code{font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: list[str], rows: list[list[Any]], numeric: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class=\"n\">{_e(c)}</td>" if i in numeric else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(verified: VerifiedReport) -> str:
    """One self-contained page: every value escaped, no script, no external resource."""
    b = verified.body
    t = b["totals"]
    verdict = b["verdict"] if b["verdict"] in ("violation", "inside-policy", "inside-policy-incomplete") else ""
    policies = [[p["policy"], ", ".join(map(str, p["allow"])) or "(unknown to the layout)", p["replicas"],
                 p["buckets"], p["objects"], p["manifests"], p["chunks"], p["copies"], p["sites"],
                 p["under_replicated"], p["violations"], p["verdict"]] for p in b["policies"]]
    violations = [[v["kind"], ", ".join(map(str, v["policies"])), ", ".join(map(str, v["nodes"])),
                   ", ".join(map(str, v["sites"])), ", ".join(map(str, v["locations"])), v["count"],
                   " ".join(f"{d}.." for d in v["digests"])]
                  for v in b["violations"]]
    nodes = [[n["id"], n["site"], n["location"], "yes" if n["answered"] else "NO"] for n in b["nodes"]]
    totals = [[name.replace("_", " "), value] for name, value in sorted(t.items())]
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>maillage residency report, layout v{_e(b['layout']['version'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Residency report</h1>",
        f"<p class=\"verdict {_e(verdict)}\">Verdict: {_e(b['verdict'])}</p>",
        f"<p>Signature verified with the cluster key <code>{_e(verified.signer)}</code>. "
        f"Audit from {_e(b['started'])} to {_e(b['finished'])} of layout version {_e(b['layout']['version'])} "
        f"(<code>{_e(b['layout']['digest'])}</code>).</p>",
        "<p>This report names no key and no bucket: it counts per policy, and names violations by policy, "
        "node, site and the first digits of a chunk's name.</p>",
        "<h2>What was checked</h2><ul>", "".join(f"<li>{_e(c)}</li>" for c in b["checked"]), "</ul>",
        "<h2>Totals</h2>", _table(["", "count"], totals, frozenset({1})),
        "<h2>Policies</h2>",
        _table(["policy", "allows", "R", "buckets", "objects", "manifests", "chunks", "copies", "sites",
                "under-replicated", "violations", "verdict"], policies, frozenset(range(2, 11))),
        f"<h2>Violations ({_e(t['violations'])})</h2>",
        "<p>key: copies of objects' manifests on a node outside their policy; chunk: stored chunks no bucket "
        "referencing them allows on that node; record: nodes holding a bucket record that the other nodes "
        "contradict (policy or generation).</p>" if violations else "<p>None.</p>",
        _table(["kind", "policies", "nodes", "sites", "locations", "count", "chunk names (prefix)"], violations,
               frozenset({5})) if violations else "",
        f"<h2>Nodes ({_e(t['answered'])} of {_e(t['nodes'])} answered)</h2>",
        _table(["node", "site", "location", "answered"], nodes),
        "</body></html>\n"])
