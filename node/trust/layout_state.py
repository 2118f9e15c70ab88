"""The node's current layout: highest version wins, persisted so a restart keeps what was applied.

The layout is the admin's truth about where every node is; a node never trusts what a peer says
about its own location, only a signed layout with a higher version (see `auth.py`). The signature is
kept next to it, so the node can hand the layout on and its peers can check it too. A staged layout
(an admin's change not applied yet) is kept here as well, signed, and changes nothing until applied.

Once a layout pins its nodes' certificate keys, a newer one that pins none is refused (a layout of
a mesh from before pinning may pin none; going back to that would let any certificate of the
cluster CA act as a node again). Rotating keys is a layout that pins others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from maillage.placement import (
    Layout,
    LayoutError,
    PartitionTable,
    PlacementError,
    format_layout,
    parse_layout,
    partition_table,
)
from maillage.proto.trust.signing import read_signed, write_durably, write_signed

HISTORY = 8  # layouts kept before the current one: each changes at most a few owners of a name


@dataclass(frozen=True)
class StagedLayout:
    base_version: int
    text: str
    signature: bytes


class LayoutState:
    def __init__(self, path: Path, initial: Layout | None = None, initial_signature: bytes = b"",
                 initial_text: str | None = None) -> None:
        self._path = path
        self._staged_path = path.with_name("staged-layout.json")
        self._history_path = path.with_name("previous-layouts.json")
        self._kept: list[tuple[Layout, dict[str, str]]] | None = None  # the history file, read once, newest first
        self._history_tables: dict[tuple[int, str], PartitionTable | None] = {}
        self._tables: dict[str, PartitionTable] = {}
        stored = _read_signed(path) if path.exists() else None
        if stored is not None and (initial is None or stored[0].version > initial.version):
            self._current, self._text, self._signature = stored
        elif initial is not None:
            if stored is not None:
                _check_pins_kept(stored[0], initial)
                if stored[0].version < initial.version:  # a newer layout given at start: the stored one is history
                    self._current, self._text, self._signature = stored
                    self._remember()
            self._current, self._signature = initial, initial_signature
            self._text = format_layout(initial) if initial_text is None else initial_text
            self._persist()
        else:
            raise FileNotFoundError(f"no layout: {path} does not exist and none was given")

    @property
    def current(self) -> Layout:
        return self._current

    @property
    def signature(self) -> bytes:
        return self._signature

    @property
    def text(self) -> str:
        """The exact text the signature covers."""
        return self._text

    def history(self) -> list[Layout]:
        """The layouts this node applied before the current one, newest first (at most
        `HISTORY` of them, kept across restarts). Until repair has moved what a change moved, the
        nodes that owned a partition or a bucket record before it may be the ones holding it:
        repair waits for them before dropping a tombstone (`Repairer._former`), and a lookup that
        finds no record on the current owners asks them (`Catalog.moved`)."""
        return [h for h, _ in self._entries() if h.version < self._current.version]

    def history_table(self, layout: Layout, policy_name: str) -> PartitionTable | None:
        """The partition table of a policy under one of `history()`'s layouts, built once (the
        tables of a layout replaced are kept for it); None if that layout could not place the policy."""
        key = (layout.version, policy_name)
        if key not in self._history_tables:
            try:
                self._history_tables[key] = partition_table(layout, policy_name)
            except PlacementError:
                self._history_tables[key] = None
        return self._history_tables[key]

    def history_doc(self, before: int) -> tuple[int, str, bytes] | None:
        """(version, text, signature) of the newest kept layout below `before`, None if none."""
        for layout, entry in self._entries():
            if layout.version < before:
                return layout.version, entry["text"], bytes.fromhex(entry["signature"])
        return None

    def add_history(self, layout: Layout, signature: bytes, text: str) -> bool:
        """Keep `layout` (checked by the caller, older than the current one) among the layouts
        before the current one: what a node that joined in a change learns from a peer. Returns
        whether it was kept (not one known already, and among the newest `HISTORY`)."""
        entries = self._entries()
        if layout.version >= self._current.version or any(h.version == layout.version for h, _ in entries):
            return False
        self._keep([*entries, (layout, {"text": text, "signature": signature.hex()})])
        return any(h.version == layout.version for h, _ in self._entries())

    def _entries(self) -> list[tuple[Layout, dict[str, str]]]:
        if self._kept is None:
            raw = json.loads(self._history_path.read_text()) if self._history_path.exists() else []
            self._kept = [(parse_layout(entry["text"]), entry) for entry in raw]
        return self._kept

    def _keep(self, entries: list[tuple[Layout, dict[str, str]]]) -> None:
        """Write the newest `HISTORY` of `entries` as the history; forget the tables of the others."""
        self._kept = sorted(entries, key=lambda pair: pair[0].version, reverse=True)[:HISTORY]
        write_durably(self._history_path, json.dumps([entry for _, entry in self._kept]))
        versions = {h.version for h, _ in self._kept}
        self._history_tables = {k: t for k, t in self._history_tables.items() if k[0] in versions}

    def _remember(self) -> None:
        """Put the current layout (about to be replaced) first in the history, with the tables
        already built for it (a lookup or repair asking its owners does not build them again)."""
        self._history_tables.update({(self._current.version, name): t for name, t in self._tables.items()})
        self._keep([(self._current, {"text": self._text, "signature": self._signature.hex()}), *self._entries()])

    def table(self, policy_name: str) -> PartitionTable:
        """The current partition table of a policy, built once per layout version."""
        table = self._tables.get(policy_name)
        if table is None:
            table = self._tables[policy_name] = partition_table(self._current, policy_name)
        return table

    def offer(self, layout: Layout, signature: bytes = b"", text: str | None = None) -> bool:
        """Adopt `layout` if it is newer than the current one; returns whether it was adopted.
        The caller has checked `signature` over `text` (the layout's own text by default)."""
        if layout.version <= self._current.version:
            return False
        _check_pins_kept(self._current, layout)
        self._remember()
        self._current, self._signature = layout, signature
        self._text = format_layout(layout) if text is None else text
        self._persist()
        self._tables = {}
        staged = self.staged()
        if staged is not None and staged.base_version < layout.version:
            self.clear_staged()  # a change staged against an older layout no longer applies
        return True

    def staged(self) -> StagedLayout | None:
        if not self._staged_path.exists():
            return None
        raw = json.loads(self._staged_path.read_text())
        return StagedLayout(raw["base_version"], raw["text"], bytes.fromhex(raw["signature"]))

    def stage(self, staged: StagedLayout) -> None:
        write_durably(self._staged_path, json.dumps({
            "base_version": staged.base_version, "text": staged.text, "signature": staged.signature.hex()}))

    def clear_staged(self) -> None:
        self._staged_path.unlink(missing_ok=True)

    def _persist(self) -> None:
        # One file, one atomic replace: the signature rides in a comment line above the text.
        write_signed(self._path, self._text, self._signature)


def _read_signed(path: Path) -> tuple[Layout, str, bytes]:
    text, signature = read_signed(path)
    return parse_layout(text), text, signature


def _check_pins_kept(current: Layout, new: Layout) -> None:
    if current.pins_keys and not new.pins_keys:
        raise LayoutError(f"layout v{new.version} pins no node certificate key, but v{current.version} does: "
                          "refused (without pins any certificate of the cluster CA would pass for a node)")


def pin_warnings(layout: Layout, node_id: str, own_key: str | None) -> list[str]:
    """What a node says at start about certificate pinning: a layout that pins no key (a mesh from
    before pinning: any certificate the cluster CA issues for a node id passes for that node), or
    its own certificate not being the one the layout pins (its peers will refuse its calls)."""
    if not layout.pins_keys:
        return [f"layout v{layout.version} pins no node certificate key: any certificate the cluster CA "
                "issues for a node id is taken for that node (a mesh from before pinning); record every "
                "node's key and apply a layout that pins them (`maillage cluster pin`, `maillage layout pin`)"]
    pinned = layout.node(node_id).cert_key
    if own_key is not None and own_key != pinned:
        return [f"this node's certificate key {own_key} is not the one layout v{layout.version} pins for "
                f"{node_id} ({pinned}): its peers will refuse its calls until a layout pinning it is "
                "applied (or start it with the certificate that layout pins)"]
    return []
