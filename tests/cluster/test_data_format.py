"""A real `maillage node run` on a data directory a newer release marked: one line naming both
formats, exit code 1, no traceback, and nothing in the directory touched."""

from __future__ import annotations

import subprocess
import sys

from maillage.storage import DATA_FORMAT
from maillage.storage.datadir import FORMAT_FILE
from maillage.testing.localmesh import node_env


def test_a_node_refuses_a_newer_data_directory(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / FORMAT_FILE).write_text(f"maillage data format {DATA_FORMAT + 1}\n")
    done = subprocess.run([sys.executable, "-m", "maillage.cli", "node", "run", "--id", "paris-1",
                           "--data-dir", str(data), "--trust-dir", str(tmp_path / "trust")],
                          capture_output=True, text=True, timeout=60, env=node_env())
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maillage: data directory "), done.stderr
    assert f"data format {DATA_FORMAT + 1}, newer than format {DATA_FORMAT}" in lines[0]
    assert sorted(p.name for p in data.iterdir()) == [FORMAT_FILE]  # nothing opened, nothing written
