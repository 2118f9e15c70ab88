"""The node's current layout: highest version wins, persisted so a restart keeps what was applied.

The layout is the admin's truth about where every node is; a node never trusts what a peer says
about its own location, only a layout with a higher version.
"""

from __future__ import annotations

import os
from pathlib import Path

from maillage.placement import Layout, PartitionTable, format_layout, parse_layout, partition_table


class LayoutState:
    def __init__(self, path: Path, initial: Layout | None = None) -> None:
        self._path = path
        stored = parse_layout(path.read_text()) if path.exists() else None
        candidates = [x for x in (stored, initial) if x is not None]
        if not candidates:
            raise FileNotFoundError(f"no layout: {path} does not exist and none was given")
        self._current = max(candidates, key=lambda x: x.version)
        self._tables: dict[str, PartitionTable] = {}
        if stored is None or self._current.version > stored.version:
            self._persist(self._current)

    @property
    def current(self) -> Layout:
        return self._current

    def table(self, policy_name: str) -> PartitionTable:
        """The current partition table of a policy, built once per layout version."""
        table = self._tables.get(policy_name)
        if table is None:
            table = self._tables[policy_name] = partition_table(self._current, policy_name)
        return table

    def offer(self, layout: Layout) -> bool:
        """Adopt `layout` if it is newer than the current one; returns whether it was adopted."""
        if layout.version <= self._current.version:
            return False
        self._persist(layout)
        self._current = layout
        self._tables = {}
        return True

    def _persist(self, layout: Layout) -> None:
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(format_layout(layout))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
