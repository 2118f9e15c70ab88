"""`maillage audit`: prove, item by item, that every stored copy sits inside its policy.

The audit itself (what it asks, how it judges) is the SDK's `maillage.client.admin.collect_audit`;
this command parses arguments and renders its report. With --report it also writes the signed
report an auditor keeps (`maillage.client.admin.report_body`, `sign_report`), which `maillage audit
verify|render` (`audit_report.py`) check offline.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from maillage.cli import audit_report
from maillage.cli.common import CREDENTIALS_NOTE, CommandError, add_endpoint_option, profile_of
from maillage.client.admin import AuditReport, VerifiedReport, collect_audit, report_body, sign_report
from maillage.proto.trust.signing import LayoutSigner, write_durably

SHOWN_VIOLATIONS = 50


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit", help="prove that every stored copy sits inside its policy",
        description="Ask every node of the layout what it stores (manifests per bucket and every chunk "
                    "on its disk) and check each copy against its bucket's residency policy: a key "
                    "must rest only where its bucket's policy allows; a chunk only where at least one "
                    "bucket referencing it allows (dedup across policies is legitimate). Also counts "
                    "items with fewer than R copies on distinct sites inside their policy. Needs an "
                    "admin access key (it reads every tenant's data) and changes nothing. Exit "
                    "status: 1 on any residency violation (or when "
                    "the audit cannot run), with --require-full also when something is "
                    "under-replicated or a node did not answer; 0 otherwise. " + CREDENTIALS_NOTE +
                    " `maillage audit --report FILE` also writes a report signed with the cluster's key, "
                    "naming no key or bucket, that `maillage audit verify FILE` checks offline.")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument("--require-full", action="store_true",
                   help="also fail unless every item has R copies and every node answered")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per-call deadline for each node (default: 10)")
    p.add_argument("--report", metavar="FILE",
                   help="also write the signed residency report (per-policy counts, violations by node and "
                        "site, no key or bucket name) to FILE, whatever the verdict")
    p.add_argument("--html", metavar="OUT", help="with --report: also write it as an HTML page")
    p.add_argument("--signing-key", metavar="FILE",
                   help="the cluster's private layout-signing key that signs the report (default: "
                        "layout-signing.key in the profile's trust dir, the cluster dir of `maillage cluster init`)")
    add_endpoint_option(p)
    p.set_defaults(func=run_command)
    audit_report.add_parsers(p.add_subparsers(dest="audit_action", metavar="{verify,render}",
                                              title="reports (offline)"))


def summary(report: AuditReport) -> str:
    unreachable = ", ".join(report.unreachable) if report.unreachable else "none"
    lines = [
        f"audit of layout v{report.layout_version}: {report.nodes} nodes asked, "
        f"{report.nodes - len(report.unreachable)} answered, {report.buckets} bucket(s)",
        f"  objects           {report.objects} live key(s) ({report.manifests} manifest(s) incl. tombstones)",
        f"  copies            {report.copies} ({report.chunks} distinct chunk(s)) on {report.sites} site(s)",
        f"  violations        {len(report.violations)}",
        f"  under-replicated  {report.under_replicated} item(s) with fewer than R copies on distinct sites "
        "inside their policy" + (f" ({report.off_tier} of them short of their backbone copies)"
                                 if report.off_tier else ""),
        f"  unreachable       {unreachable}",
    ]
    if report.unreferenced_chunks:
        lines.append(f"  unreferenced      {report.unreferenced_chunks} chunk(s) no manifest references "
                     "(awaiting garbage collection)")
    if report.unknown_buckets:
        lines.append(f"  unknown buckets   {', '.join(report.unknown_buckets)} (keys stored, no bucket record)")
    for lost in report.missing_chunks[:SHOWN_VIOLATIONS]:
        lines.append(f"  !! missing: {lost}")
    for v in report.violations[:SHOWN_VIOLATIONS]:
        lines.append(f"  !! {v}")
    if len(report.violations) > SHOWN_VIOLATIONS:
        lines.append(f"  !! ... and {len(report.violations) - SHOWN_VIOLATIONS} more (--json lists all)")
    if not report.ok:
        verdict = f"RESIDENCY VIOLATION: {len(report.violations)} cop(ies) outside their policy"
    elif report.fully_replicated:
        verdict = "every copy inside its policy; fully replicated"
    else:
        verdict = "every copy found is inside its policy; NOT fully replicated"
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


def _signer(args: argparse.Namespace) -> LayoutSigner:
    path = Path(args.signing_key) if args.signing_key else Path(profile_of(args).trust_dir) / "layout-signing.key"
    try:
        return LayoutSigner.from_file(path)
    except ValueError as exc:
        raise CommandError(f"cannot sign the report: {exc} (--signing-key names the cluster's "
                           "layout-signing.key; only the admin machine holds it)") from None


def run_command(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CommandError(f"--timeout must be positive (got {args.timeout})")
    if args.html and not args.report:
        raise CommandError("--html needs --report FILE (the page renders the signed report)")
    signer = _signer(args) if args.report else None      # refuse before auditing, not after
    started = datetime.datetime.now(datetime.UTC)
    report = collect_audit(profile_of(args), timeout=args.timeout)
    if signer is not None:
        body = report_body(report, started=started, finished=datetime.datetime.now(datetime.UTC))
        try:
            write_durably(args.report, sign_report(body, signer))
            if args.html:
                write_durably(args.html, audit_report.render_html(VerifiedReport(body, signer.verifier().key_id())))
        except OSError as exc:
            raise CommandError(f"cannot write the report: {exc.strerror}: {exc.filename}") from None
        if not args.json:
            print(f"report signed by {signer.verifier().key_id()} written to {os.fspath(args.report)}")
    print(report.to_json() if args.json else summary(report))
    if not report.ok:
        return 1
    if args.require_full and not report.fully_replicated:
        if not args.json:
            print("maillage audit: --require-full: not fully replicated", file=sys.stderr)
        return 1
    return 0

