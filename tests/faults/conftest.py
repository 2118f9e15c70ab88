"""Fixtures of the fault scenarios: a ``Harness`` per test, and which mode the suite ran in.

As root (CI) a scenario runs with one network namespace per site; a missing capability there is a
FAILURE, never a silent skip. Without root the scenarios that only need processes, disks and clocks
run on loopback (said in the output), and the ones needing network faults are skipped with the reason.
"""

from __future__ import annotations

import os

import pytest

from maillage.testing.cluster import choose_mode
from maillage.testing.netns import require_netns

_modes: dict[str, str] = {}


@pytest.fixture
def harness_mode(request) -> str:
    """'netns' when this process can build namespaces, else 'loopback' (recorded for the summary)."""
    if os.geteuid() == 0:
        require_netns()
    mode, why = choose_mode("auto")
    _modes[request.node.nodeid] = mode
    print(f"fault harness mode: {mode} ({why})")
    return mode


def pytest_terminal_summary(terminalreporter) -> None:
    if _modes:
        modes = sorted(set(_modes.values()))
        terminalreporter.write_line(f"fault harness: {len(_modes)} scenario(s) ran in mode(s) {', '.join(modes)}")
