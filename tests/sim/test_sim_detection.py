"""Detection and news in simulated seconds, on one seeded 150-site run (a few seconds of CPU):
what issue 23 asks of 1,000 sites (`maillage sim --sites 1000`, benchmarks/RESULTS.md), held here
at a size CI can run, so a change that slows failure detection or document spread fails a test.

One seed is one run, so the figures are exact and the test is not flaky; the bounds leave the
margin a protocol change that keeps the design would need (measured at 150 sites: every
co-holder of the crashed node within 2.8 s, 99 % of nodes within 4.8 s, layout and access
document to 99 % within 3.5 s; before the verification flood and co-holder ring: 18 s).
"""

from __future__ import annotations

import pytest

from maillage.testing.sim import SimConfig, SimResult, simulate


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate(SimConfig(sites=150, seconds=10.0, seed=1, loss=0.01, phases=("idle", "news"),
                              root=tmp_path_factory.mktemp("sim")))


def test_every_co_holder_of_a_crashed_node_suspects_it_within_5_simulated_seconds(run: SimResult) -> None:
    assert run.holders > 0
    assert run.detect_holders <= 5.0


def test_a_crash_is_known_to_99_percent_of_nodes_well_within_15_simulated_seconds(run: SimResult) -> None:
    assert run.detect_p99 <= 8.0
    assert run.detect_all <= 10.0


def test_a_layout_and_an_access_document_reach_99_percent_within_5_s_and_all_within_30_s(run: SimResult) -> None:
    assert run.layout_p99 <= 5.0 and run.access_p99 <= 5.0
    assert run.layout_all <= 30.0 and run.access_all <= 30.0


def test_one_percent_loss_suspects_no_live_node_and_traffic_stays_small(run: SimResult) -> None:
    assert run.false_suspicions == 0
    assert run.msgs_per_node_s < 25 and run.bytes_per_node_s < 600

