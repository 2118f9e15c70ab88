"""`maillage energy` in process: nodes' `EnergyStatus` answers (as protobuf, through the admin API's
`status_rows`) gathered per site and for the mesh, an unreachable node shown, and the exit code
(1 only when no node answers). The command against a real mesh is in test_cli_commands.py."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from maillage.cli import energy_cmd
from maillage.cli.energy_cmd import mesh_totals, render_energy, site_reports
from maillage.client.admin import status_rows
from maillage.placement import Node
from maillage.proto import pb

NODES = [Node("paris-1-a", "10.0.0.1:7000", "paris-1", 1 << 40), Node("paris-1-b", "10.0.0.2:7000", "paris-1", 1 << 40),
         Node("berlin-1-a", "10.0.1.1:7000", "berlin-1", 1 << 40), Node("lyon-1-a", "10.0.2.1:7000", "lyon-1", 1 << 40),
         Node("oslo-1-a", "10.0.3.1:7000", "oslo-1", 1 << 40)]


def kind(name: str, nbytes: int = 0, green: int = 0, *, turns: int = 0, waiting: bool = False,
         joules: float = 0.0) -> pb.EnergyKind:
    return pb.EnergyKind(kind=name, turns=turns, bytes=nbytes, green_bytes=green, waits=3 if waiting else 0,
                         waiting=waiting, joules=joules, green_joules=joules * green / nbytes if nbytes else 0.0)


def status(state: str, source: str, *kinds: pb.EnergyKind, surplus: float | None = None,
           carbon: float | None = None, problem: str = "") -> pb.NodeStatus:
    e = pb.EnergyStatus(source=source, state=state, has_surplus=surplus is not None, surplus_w=surplus or 0.0,
                        has_carbon=carbon is not None, carbon_g_per_kwh=carbon or 0.0, problem=problem,
                        kinds=list(kinds))
    return pb.NodeStatus(energy=e)


ANSWERS: dict[str, Any] = {
    "paris-1-a": status("green", "solar", kind("scrub", 800, 800, turns=8, joules=2.0), kind("gc", turns=4),
                        kind("urgent-repair", 500, 0, joules=10.0), surplus=1200.0, carbon=55.0),
    "paris-1-b": status("green", "solar", kind("scrub", 200, 100, turns=2, joules=0.5), kind("rebalance", 1000, 1000),
                        surplus=1200.0, carbon=55.0),
    "berlin-1-a": status("grey", "file", kind("scrub", 0, waiting=True), kind("expiry", turns=1, waiting=True),
                         surplus=-300.0, carbon=380.0),
    "lyon-1-a": status("unknown", "none", kind("scrub", 4000, 4000, joules=8.0)),
    "oslo-1-a": "unreachable (deadline exceeded)",
}


def test_nodes_are_gathered_per_site_and_for_the_mesh():
    sites = {s["site"]: s for s in site_reports(status_rows(NODES, ANSWERS))}
    paris, berlin, lyon, oslo = sites["paris-1"], sites["berlin-1"], sites["lyon-1"], sites["oslo-1"]
    assert (paris["answered"], paris["nodes"], paris["state"], paris["surplus_w"]) == (2, 2, "green", 1200.0)
    assert paris["bytes"] == {"urgent-repair": 500, "rebalance": 1000, "hand-back": 0, "scrub": 1000,
                              "tier-move": 0}
    assert paris["green_share"] == pytest.approx(1900 / 2000)   # deferrable only: urgent repair never waits
    assert paris["joules"] == pytest.approx(12.5) and paris["passes"]["gc"] == 4
    assert berlin["deferred"] == ["expiry", "scrub"] and berlin["green_share"] is None
    assert lyon["green_share"] is None           # no source: its bytes are "green or unknown", not green
    assert oslo["state"] == "unreachable" and oslo["answered"] == 0 and "deadline" in oslo["unreachable"]["oslo-1-a"]
    totals = mesh_totals(list(sites.values()))
    assert totals["nodes_answered"] == 4 and totals["nodes"] == 5
    assert totals["sites_by_state"] == {"green": 1, "grey": 1, "unknown": 1, "unreachable": 1}
    assert totals["green_share"] == pytest.approx(1900 / 2000)
    assert totals["bytes"]["scrub"] == 5000


def test_the_report_shows_every_site_and_says_which_node_did_not_answer():
    sites = site_reports(status_rows(NODES, ANSWERS))
    text = render_energy(sites, mesh_totals(sites))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["SITE", "NODES", "STATE", "SOURCE"]
    paris = next(line for line in lines if line.startswith("paris-1"))
    assert "2/2" in paris and "+1200 W" in paris and "55 g/kWh" in paris and "95%" in paris
    berlin = next(line for line in lines if line.startswith("berlin-1"))
    assert "expiry,scrub" in berlin and "-300 W" in berlin
    oslo = next(line for line in lines if line.startswith("oslo-1"))
    assert "0/1" in oslo and "unreachable" in oslo and "oslo-1-a: unreachable (deadline" in oslo
    assert "mesh: 4 site(s) (1 green, 1 grey, 1 unknown, 1 unreachable), 4/5 node(s) answered" in text
    assert "deferrable bytes in green windows: 95%" in text


def test_a_mixed_site_and_a_broken_signal_are_shown():
    answers = {**ANSWERS, "paris-1-b": status("unknown", "solar", problem="solar: the solar model needs pvlib")}
    sites = site_reports(status_rows(NODES, answers))
    paris = next(s for s in sites if s["site"] == "paris-1")
    assert paris["state"] == "green/unknown"
    text = render_energy(sites, mesh_totals(sites))
    assert "signal: solar: the solar model needs pvlib" in text and "1 mixed" in text


class FakeAdmin:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.layout = argparse.Namespace(nodes=NODES)

    def __call__(self, _profile):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def statuses(self, *, timeout: float):
        return self.answers


@pytest.mark.parametrize("answers, code", [
    (ANSWERS, 0),
    ({**ANSWERS, **{n.id: "unreachable (connection refused)" for n in NODES[:4]}}, 1),
])
def test_the_command_fails_only_when_no_node_answers(monkeypatch, capsys, answers, code):
    import maillage.client.admin as admin

    monkeypatch.setattr(admin, "ClusterAdmin", FakeAdmin(answers))
    monkeypatch.setattr(energy_cmd, "profile_of", lambda args: None)
    args = argparse.Namespace(timeout=5.0, json=True)
    assert energy_cmd.energy_command(args) == code
    report = json.loads(capsys.readouterr().out)
    assert len(report["sites"]) == 4 and report["mesh"]["nodes"] == 5
    assert report["mesh"]["nodes_answered"] == (4 if code == 0 else 0)
