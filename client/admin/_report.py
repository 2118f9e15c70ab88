"""A residency report an auditor can keep: an audit's aggregates, signed, checkable offline.

`maillage audit --report FILE` writes one; `maillage audit verify FILE` checks it years later on a
machine that never saw the mesh, with the cluster's public layout-signing key alone.

The signer is the cluster's admin key (`layout-signing.key`, the Ed25519 key that signs layouts
and the access document) in its own signature domain, kind ``audit-report``: an auditor pins one
public key, which every node's and client's trust dir already holds, and a report's signature can
never pass for a layout's nor the reverse.

A report leaves the territory of every policy it covers, so it carries no key and no bucket name:
per policy aggregates (buckets, objects, manifests, chunks, copies, sites, under-replicated items,
violations, verdict), the nodes asked (id, site, location, answered), and each violation as kind,
policies, nodes and sites, with the first 16 hex digits of a misplaced chunk's name (keyed names:
they reveal nothing of the bytes), grouped by (kind, policies, nodes) so its size is bounded by
the layout, not by the data. Every name in it comes from the signed layout (policies, node ids,
sites, locations): a policy name that only nodes' bucket records give is numbered instead.

The file is the canonical JSON (sorted keys, indent 1, ASCII) of {"body": ..., "signature": ...};
the signed bytes are the compact canonical JSON of the body. A reader refuses a file that is not
byte for byte the canonical form of what it parses to, so any change to the file, even one JSON
would read the same (a space, an escape, a hex digit's case), is refused, not only one that
changes the body.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any

from maillage.client.admin._audit import AuditReport, Finding
from maillage.proto.trust.signing import SIGNATURE_SIZE, LayoutAuthError, LayoutSigner, LayoutVerifier

__all__ = ["MAX_REPORT_BYTES", "REPORT_FORMAT", "ReportError", "VerifiedReport", "report_body", "sign_report",
           "verify_report"]

REPORT_FORMAT = "maillage residency report"
REPORT_VERSION = 1                     # the version signed with the body (the signature domain's "version")
MAX_REPORT_BYTES = 16 << 20            # a report of a thousand nodes and a hundred policies is well under 1 MiB
SHOWN_DIGESTS = 20                     # chunk-name prefixes listed per violation group
CHECKED = (
    "every node of the layout was asked for its inventory: the manifests it holds per bucket and every chunk on "
    "its disk",
    "every node was asked for its own bucket records; nodes disagreeing on a bucket's policy or generation are "
    "violations",
    "the newest manifest of every live chunked object was read and its chunks looked for on the nodes",
    "each copy was judged against the policy of its bucket (a chunk against every bucket referencing it); an item "
    "is under-replicated with fewer than R distinct sites inside its policy holding it",
)
_HEX_SIGNATURE = re.compile(rf"[0-9a-f]{{{2 * SIGNATURE_SIZE}}}")


class ReportError(Exception):
    """A report that cannot be trusted: malformed, altered, or signed by a key not the cluster's."""


# ----- writing ---------------------------------------------------------------------------------

def _utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _verdict(violations: int, complete: bool) -> str:
    if violations:
        return "violation"
    return "inside-policy" if complete else "inside-policy-incomplete"


def _grouped(findings: list[Finding], places: dict[str, tuple[str, str]],
             named: dict[str, str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.kind, tuple(sorted({named.get(p, p) for p in f.policies})), f.nodes), []).append(f)
    items = []
    for (kind, policies, nodes), found in sorted(groups.items()):
        digests = sorted({f.digest for f in found if f.digest})
        items.append({
            "kind": kind, "policies": list(policies), "nodes": list(nodes), "count": len(found),
            "sites": sorted({places[n][0] for n in nodes if n in places}),
            "locations": sorted({places[n][1] for n in nodes if n in places}),
            "digests": digests[:SHOWN_DIGESTS]})
    return items


def report_body(report: AuditReport, *, started: datetime.datetime, finished: datetime.datetime) -> dict[str, Any]:
    """The body of a report on `report` (an audit that ran from `started` to `finished`): names of
    keys and buckets never enter it."""
    unreachable = set(report.unreachable)
    # Every name in a report comes from the signed layout: a policy name only the nodes' (unsigned)
    # bucket records give, which a hostile node could make of anything, is numbered instead.
    strays = sorted(t.policy for t in report.tallies if not t.in_layout)
    named = {name: f"(not in the layout #{i})" for i, name in enumerate(strays, 1)}
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "started": _utc(started), "finished": _utc(finished),
        "checked": list(CHECKED),
        "layout": {"version": report.layout_version, "digest": report.layout_digest},
        "nodes": [{"id": n, "site": site, "location": location, "answered": n not in unreachable}
                  for n, (site, location) in sorted(report.places.items())],
        "policies": [{"policy": named.get(t.policy, t.policy), "allow": list(t.allow), "replicas": t.replicas,
                      "buckets": t.buckets, "objects": t.objects, "manifests": t.manifests, "chunks": t.chunks,
                      "copies": t.copies,
                      "sites": t.sites, "under_replicated": t.under_replicated, "violations": t.violations,
                      "verdict": _verdict(t.violations, not unreachable and t.under_replicated == 0)}
                     for t in report.tallies],
        "totals": {"nodes": report.nodes, "answered": report.nodes - len(unreachable), "buckets": report.buckets,
                   "objects": report.objects, "manifests": report.manifests, "chunks": report.chunks,
                   "copies": report.copies, "sites": report.sites, "under_replicated": report.under_replicated,
                   "violations": len(report.violations), "missing_chunks": len(report.missing_chunks),
                   "unreferenced_chunks": report.unreferenced_chunks,
                   "unknown_buckets": len(report.unknown_buckets)},
        "violations": _grouped(report.findings, report.places, named),
        "verdict": _verdict(len(report.violations), report.fully_replicated),
    }


def _signed_bytes(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _file_text(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def sign_report(body: dict[str, Any], signer: LayoutSigner) -> str:
    """The text of the report file: the body and its signature by the cluster's key."""
    signature = signer.sign(REPORT_VERSION, _signed_bytes(body), kind="audit-report")
    return _file_text({"body": body, "signature": {
        "algorithm": "ed25519", "kind": "audit-report", "signer": signer.verifier().key_id(),
        "value": signature.hex()}})


# ----- reading ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifiedReport:
    body: dict[str, Any]
    signer: str                        # "sha256:<hex>" of the cluster's public key that verified it


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ReportError("malformed report: a JSON object repeats a name")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _need(doc: Any, where: str, fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ReportError(f"malformed report: {where} is not an object")
    for name, kind in fields.items():
        value = doc.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ReportError(f"malformed report: {where}.{name} missing or of the wrong type")
    return doc


def _check_body(body: dict[str, Any]) -> dict[str, Any]:
    """The shape the renderer relies on (a signed body of an unknown format is refused, not guessed)."""
    _need(body, "body", {"format": str, "version": int, "started": str, "finished": str, "checked": list,
                         "layout": dict, "nodes": list, "policies": list, "totals": dict, "violations": list,
                         "verdict": str})
    if body["format"] != REPORT_FORMAT or body["version"] != REPORT_VERSION:
        raise ReportError(f"not a {REPORT_FORMAT} version {REPORT_VERSION} (format {body['format']!r}, "
                          f"version {body['version']})")
    _need(body["layout"], "layout", {"version": int, "digest": str})
    for node in body["nodes"]:
        _need(node, "nodes[]", {"id": str, "site": str, "location": str, "answered": bool})
    counts = {"buckets": int, "objects": int, "manifests": int, "chunks": int, "copies": int, "sites": int,
              "under_replicated": int, "violations": int}
    for policy in body["policies"]:
        _need(policy, "policies[]", {"policy": str, "allow": list, "replicas": int, "verdict": str, **counts})
    _need(body["totals"], "totals", {"nodes": int, "answered": int, **counts})
    for item in body["violations"]:
        _need(item, "violations[]", {"kind": str, "policies": list, "nodes": list, "sites": list,
                                     "locations": list, "count": int, "digests": list})
    return body


def verify_report(data: bytes, verifier: LayoutVerifier) -> VerifiedReport:
    """The body of a report file, only if it is whole, canonical and signed by `verifier`'s key
    (the cluster's public layout-signing key); `ReportError` saying why otherwise."""
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"not a report: {len(data)} bytes, more than {MAX_REPORT_BYTES}")
    try:
        text = data.decode("ascii")
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ReportError(f"malformed report (truncated or altered?): not canonical JSON text "
                          f"({type(exc).__name__}: {str(exc)[:120]})") from None
    _need(doc, "the document", {"body": dict, "signature": dict})
    try:
        canonical = _file_text(doc)
    except (ValueError, TypeError):
        canonical = ""
    if set(doc) != {"body", "signature"} or canonical != text:
        raise ReportError("altered report: the file is not byte for byte the form it was written in")
    sig = _need(doc["signature"], "signature", {"algorithm": str, "kind": str, "signer": str, "value": str})
    if set(sig) != {"algorithm", "kind", "signer", "value"} or sig["algorithm"] != "ed25519" \
            or sig["kind"] != "audit-report":
        raise ReportError("malformed report: the signature is not an ed25519 audit-report signature")
    if not _HEX_SIGNATURE.fullmatch(sig["value"]):
        raise ReportError("malformed report: the signature value is not 64 bytes of lowercase hex")
    cluster = verifier.key_id()
    if sig["signer"] != cluster:
        raise ReportError(f"signed by key {sig['signer']}, not this cluster's ({cluster}): a report of another "
                          "cluster, or a forgery")
    try:
        verifier.verify(REPORT_VERSION, _signed_bytes(doc["body"]), bytes.fromhex(sig["value"]), kind="audit-report")
    except LayoutAuthError:
        raise ReportError("the signature does not verify: the report was altered after it was signed") from None
    return VerifiedReport(_check_body(doc["body"]), cluster)
