"""Signed residency reports, in process: the body round-trips, any altered byte is refused, another
cluster's key is refused, and the body carries no key or bucket name (the cluster tests are in
tests/admin/test_audit.py, on its mesh)."""

from __future__ import annotations

import argparse
import datetime
import json
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.cli.audit_report import cluster_verifier, render_html
from maillage.cli.common import CommandError
from maillage.client.admin import (
    Inventory,
    ReportError,
    VerifiedReport,
    evaluate,
    record_findings,
    report_body,
    sign_report,
    verify_report,
)
from maillage.placement import Policy
from maillage.proto.trust.signing import LayoutSigner
from maillage.testing.examples import examples
from maillage.testing.localmesh import SiteSpec, make_layout

SITES = (SiteSpec("paris-1", "eu/fr/idf"), SiteSpec("toulouse-1", "eu/fr/occitanie"), SiteSpec("lyon-1", "eu/fr/ara"),
         SiteSpec("munich-1", "eu/de/bayern"))      # the audit tests' mesh (tests/admin/conftest.py)
POLICIES = (Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
            Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2))

LAYOUT = make_layout(SITES, POLICIES)
SIGNER = LayoutSigner.generate()
OTHER = LayoutSigner.generate()
FR, DE = b"\x01" * 32, b"\x02" * 32
T0 = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(seconds=3)
SECRET_KEY_NAME = "patient-4711-scan.dcm"


def _inv(node: str, keys=None, chunks=(), refs=None) -> Inventory:
    return Inventory(node, {b: set(k) for b, k in (keys or {}).items()}, set(chunks),
                     {b: set(d) for b, d in (refs or {}).items()})


def _violating_audit():
    """A French key and a French chunk in Germany, and nodes disagreeing on a bucket's record."""
    inventories = {
        "paris-1": _inv("paris-1", {"hopital-secret": [SECRET_KEY_NAME]}, [FR], {"hopital-secret": [FR]}),
        "lyon-1": _inv("lyon-1", {"hopital-secret": [SECRET_KEY_NAME]}, [FR]),
        "toulouse-1": _inv("toulouse-1", {"public": ["b"]}),
        "munich-1": _inv("munich-1", {"hopital-secret": [SECRET_KEY_NAME], "public": ["b"]}, [FR]),
    }
    records = {"paris-1": {"hopital-secret": ("france-only", "g1")},
               "lyon-1": {"hopital-secret": ("france-only", "g1")}, "munich-1": {"hopital-secret": ("eu-wide", "g1")}}
    return evaluate(LAYOUT, inventories, [], {"hopital-secret": "france-only", "public": "eu-wide"}, 2,
                    {FR: {"hopital-secret"}}, disagreements=["bucket hopital-secret: nodes disagree"],
                    record_findings=record_findings(records), live_per_bucket={"hopital-secret": 1, "public": 1})


REPORT = _violating_audit()
BODY = report_body(REPORT, started=T0, finished=T1)
TEXT = sign_report(BODY, SIGNER).encode()


def test_a_signed_report_round_trips_and_verifies() -> None:
    verified = verify_report(TEXT, SIGNER.verifier())
    assert verified.body == BODY == json.loads(json.dumps(BODY))
    assert verified.signer == SIGNER.verifier().key_id() == json.loads(TEXT)["signature"]["signer"]
    assert BODY["started"] == "2026-12-06T02:00:00Z" and BODY["finished"] == "2026-12-06T02:00:03Z"
    assert BODY["layout"] == {"version": LAYOUT.version, "digest": REPORT.layout_digest}
    assert REPORT.layout_digest.startswith("sha256:") and len(REPORT.layout_digest) == 7 + 64


def test_the_report_says_what_is_wrong_by_policy_node_and_chunk_prefix() -> None:
    assert BODY["verdict"] == "violation" and BODY["totals"]["violations"] == 3
    by_policy = {p["policy"]: p for p in BODY["policies"]}
    french = by_policy["france-only"]
    assert french["verdict"] == "violation" and french["allow"] == ["eu/fr"] and french["replicas"] == 2
    assert french["violations"] == 3 and french["buckets"] == 1 and french["objects"] == 1
    assert french["manifests"] == 1 and french["chunks"] == 1
    assert french["copies"] == 3 + 3 and french["sites"] == 3          # 3 manifest copies, 3 chunk frames
    assert by_policy["eu-wide"]["violations"] == 1                      # named by munich-1's dissenting record
    items = {(v["kind"], tuple(v["nodes"])): v for v in BODY["violations"]}
    assert items[("key", ("munich-1",))]["sites"] == ["munich-1"]
    assert items[("key", ("munich-1",))]["locations"] == ["eu/de/bayern"]
    assert items[("chunk", ("munich-1",))]["digests"] == [FR.hex()[:16]]
    assert items[("record", ("munich-1",))]["policies"] == ["eu-wide", "france-only"]
    nodes = {n["id"]: n for n in BODY["nodes"]}
    assert set(nodes) == {"paris-1", "lyon-1", "toulouse-1", "munich-1"} and all(n["answered"] for n in nodes.values())


def test_no_key_or_bucket_name_leaves_in_a_report() -> None:
    text = TEXT.decode()
    for name in (SECRET_KEY_NAME, "hopital-secret", "public"):
        assert name not in text
    assert any(SECRET_KEY_NAME in v for v in REPORT.violations)       # the terminal sentences do name it


@settings(max_examples=examples(2), deadline=None)
@given(at=st.integers(0, len(TEXT) - 1), flip=st.integers(1, 255))
def test_any_single_byte_changed_is_refused(at: int, flip: int) -> None:
    altered = bytearray(TEXT)
    altered[at] ^= flip
    with pytest.raises(ReportError):
        verify_report(bytes(altered), SIGNER.verifier())


@settings(max_examples=examples(0.5), deadline=None)
@given(keep=st.integers(0, len(TEXT) - 1))
def test_a_truncated_report_is_refused(keep: int) -> None:
    with pytest.raises(ReportError):
        verify_report(TEXT[:keep], SIGNER.verifier())


def test_another_clusters_key_or_signature_is_refused() -> None:
    with pytest.raises(ReportError, match="not this cluster's"):
        verify_report(TEXT, OTHER.verifier())
    forged = json.loads(sign_report(BODY, OTHER))
    forged["signature"]["signer"] = SIGNER.verifier().key_id()        # claims to be the cluster's key
    text = json.dumps(forged, sort_keys=True, indent=1, ensure_ascii=True) + "\n"
    with pytest.raises(ReportError, match="does not verify"):
        verify_report(text.encode(), SIGNER.verifier())


def test_a_consistent_edit_of_the_body_is_refused() -> None:
    """Rewritten canonically (so only the signature can tell), a clean verdict does not verify."""
    doc = json.loads(TEXT)
    doc["body"]["verdict"] = "inside-policy"
    text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True) + "\n"
    with pytest.raises(ReportError, match="does not verify"):
        verify_report(text.encode(), SIGNER.verifier())


@pytest.mark.parametrize("data", [b"", b"{}", b"[]", b"null\n", b"\xff\xfe", b"{" * 100_000,
                                  b'{"body": {}, "signature": {}}'])
def test_garbage_is_a_report_error_not_a_crash(data: bytes) -> None:
    with pytest.raises(ReportError):
        verify_report(data, SIGNER.verifier())


def test_the_html_page_escapes_everything_and_loads_nothing() -> None:
    hostile = json.loads(json.dumps(BODY))
    hostile["nodes"][0]["site"] = "<script>alert(1)</script>"
    hostile["policies"][0]["policy"] = "\"><img src=x onerror=alert(1)>"
    page = render_html(VerifiedReport(hostile, SIGNER.verifier().key_id()))
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page
    tags: list[tuple[str, list]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, attrs))

    Tags().feed(page)
    assert {t for t, _ in tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "ul", "li",
                                    "table", "tr", "th", "td", "code"}
    assert {name for _, attrs in tags for name, _ in attrs} <= {"lang", "charset", "http-equiv", "content", "class"}
    assert "Verdict: violation" in page and FR.hex()[:16] in page and SECRET_KEY_NAME not in page


def test_the_cluster_public_key_is_a_pem_file_or_a_trust_dir(tmp_path) -> None:
    (tmp_path / "layout-signing.pub").write_bytes(SIGNER.public_key_pem())
    for named in (tmp_path, tmp_path / "layout-signing.pub"):
        verifier = cluster_verifier(argparse.Namespace(cluster_public=str(named), profile=None))
        assert verify_report(TEXT, verifier).signer == SIGNER.verifier().key_id()
    (tmp_path / "private.pem").write_bytes(SIGNER.private_key_pem())
    for wrong in (tmp_path / "private.pem", tmp_path / "absent.pub", tmp_path / "nested"):
        with pytest.raises(CommandError):
            cluster_verifier(argparse.Namespace(cluster_public=str(wrong), profile=None))


def test_a_policy_name_only_a_nodes_record_gives_is_numbered_not_copied() -> None:
    """A hostile node records bucket hopital-secret under a "policy" spelling a name to smuggle out:
    the report counts it under a number; every name in a report comes from the signed layout."""
    smuggled = "leak-hopital-secret-patient-4711"
    inventories = {"paris-1": _inv("paris-1", {"hopital-secret": ["a"]}),
                   "lyon-1": _inv("lyon-1", {"hopital-secret": ["a"]})}
    records = {"paris-1": {"hopital-secret": ("france-only", "g1")},
               "lyon-1": {"hopital-secret": ("france-only", "g1")},
               "munich-1": {"hopital-secret": (smuggled, "g1")}}
    audit = evaluate(LAYOUT, inventories, [], {"hopital-secret": "france-only", "ghost": smuggled}, 1,
                     disagreements=["bucket hopital-secret: nodes disagree"],
                     record_findings=record_findings(records))
    body = report_body(audit, started=T0, finished=T1)
    text = sign_report(body, SIGNER)
    assert smuggled not in text and "hopital" not in text
    policies = {p["policy"]: p for p in body["policies"]}
    assert set(policies) == {"eu-wide", "france-only", "(not in the layout #1)"}
    assert policies["(not in the layout #1)"]["buckets"] == 1 and policies["(not in the layout #1)"]["allow"] == []
    assert [v["policies"] for v in body["violations"]] == [["(not in the layout #1)", "france-only"]]
