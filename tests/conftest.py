"""What every test shares: its speed marker, set by where it lives, and the hypothesis profile.

Markers (pyproject.toml) by directory, so a new test file is marked without anyone remembering to:

* ``cluster``: everything under tests/cluster, tests/admin, tests/cli and tests/benchmarks (they
  start node processes on loopback, the CLI against them, or a benchmark's mesh), and the files of
  `PROCESS_FILES` elsewhere that start a long-lived process of their own;
* ``netns``: everything under tests/faults and tests/testing (network namespaces, root).

A file (or one test, ``file::name``) in those directories that starts no process at all is listed
in `IN_PROCESS` and stays in the fast suite; a new file there is slow until someone lists it.
The fast suite, in-process only:

    python3 -m pytest -p no:cacheprovider -m "not cluster and not netns"

Hypothesis: the profile named by HYPOTHESIS_PROFILE (``ci`` unless set; ``thorough`` runs ten times
the examples), loaded here, before any test module builds its ``@settings`` (maillage.testing.examples).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maillage.testing.examples import load_profile

TESTS = Path(__file__).resolve().parent

MARKER_BY_DIRECTORY = {
    "cluster": "cluster", "admin": "cluster", "cli": "cluster", "benchmarks": "cluster",
    "faults": "netns", "testing": "netns",
}

# Files (or tests) under a `cluster` directory that start no node, mesh or long-lived process. The subprocesses
# some of them run are short and alone (a CLI that exits at once, a stand-in script): each test of
# them takes well under a second.
IN_PROCESS = {
    "admin/test_changes.py",              # pure layout edits
    "benchmarks/test_profile.py",         # parsing profiler output, thread CPU of this process
    "benchmarks/test_throughput_drive.py",  # the driver over a stand-in client
    "benchmarks/test_vs_swift.py",        # tables and arguments; `maillage bench` exiting 2 (~0.6 s)
    "benchmarks/test_energy_bench.py",    # `bench --energy`: a simulation in process (~4 s)
    "benchmarks/test_mesh_scale.py::test_ratios_read_a_ceiling_and_a_floor_the_right_way_round",
    "benchmarks/test_mesh_scale.py::test_the_verdict_is_the_audit_line_or_what_came_out",
    "cli/test_demo.py::test_residency_survey_flags_a_copy_outside_the_policy",  # made-up inventories
    "cli/test_cli_table.py",              # the command table; one short import-only subprocess
    "cli/test_energy_cmd.py",             # `maillage energy` over made-up status answers, in process
    "cli/test_console.py",                # the console's web app over a synthetic fleet, in process
    "testing/test_ports.py",              # port reservations: sockets and a registry file, no node
    "testing/test_localmesh_start.py",    # a mesh's trust and one stand-in process, no node
}

# Files elsewhere that start a process of their own for seconds (not a node: it would be in a
# `cluster` directory), so they are not in the fast suite either.
PROCESS_FILES = {
    "storage/test_crash.py",              # SIGKILLs a writer process, many times
}


def _marker(path: Path, name: str) -> str | None:
    relative = path.resolve().relative_to(TESTS).as_posix()
    if relative in PROCESS_FILES:
        return "cluster"
    if relative in IN_PROCESS or f"{relative}::{name}" in IN_PROCESS:
        return None
    return MARKER_BY_DIRECTORY.get(relative.split("/", 1)[0]) if "/" in relative else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = _marker(item.path, getattr(item, "originalname", item.name))
        if marker is not None and marker not in {m.name for m in item.iter_markers()}:
            item.add_marker(marker)


load_profile()
