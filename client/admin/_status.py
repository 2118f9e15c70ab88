"""Mesh-wide status as plain data: how every node sees the mesh, and repair progress.

A node's own view of its peers comes from gossip; `mesh_views` combines them so the state shown for a
node is the worst any answering node reports. The CLI renders these rows; tests and tools read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from maillage.placement import Node
from maillage.proto import pb

__all__ = ["mesh_views", "repair_fields", "status_rows"]


def mesh_views(answers: dict[str, Any]) -> dict[str, str]:
    """The state the mesh sees each node in: the worst state reported by the nodes that answered
    (a node unreachable from here but seen up by its peers is a problem of this path only)."""
    rank = {"up": 0, "suspect": 1, "down": 2}
    seen: dict[str, str] = {}
    for reply in answers.values():
        if isinstance(reply, str):
            continue
        for view in reply.peers:
            if rank.get(view.state, 0) >= rank.get(seen.get(view.node_id, "up"), 0):
                seen[view.node_id] = view.state
    return seen


def repair_fields(pr: pb.RepairProgress) -> dict[str, Any]:
    """A node's RepairProgress as the plain dict both commands print."""
    return {"running": pr.running, "rounds": pr.rounds_completed, "groups_total": pr.groups_total,
            "groups_done": pr.groups_done, "behind": pr.groups_behind, "items_copied": pr.items_copied,
            "bytes_copied": pr.bytes_copied, "rate_bytes_per_s": pr.rate_bytes_per_s,
            "eta_seconds": pr.eta_seconds, "handoff_items": pr.handoff_items}


def energy_fields(e: pb.EnergyStatus) -> dict[str, Any]:
    """A node's EnergyStatus as a plain dict: its site's signal and what its background work did."""
    return {"source": e.source or "none", "state": e.state or "unknown",
            "surplus_w": e.surplus_w if e.has_surplus else None,
            "carbon_g_per_kwh": e.carbon_g_per_kwh if e.has_carbon else None,
            "problem": e.problem, "next_green": e.next_green or None, "idle_w": e.idle_w,
            "kinds": {k.kind: {"turns": k.turns, "bytes": k.bytes, "green_bytes": k.green_bytes, "waits": k.waits,
                               "waiting": k.waiting, "joules": k.joules, "green_joules": k.green_joules}
                      for k in e.kinds}}


LIFECYCLE_FIELDS = ("sweeps", "expired", "noncurrent_removed", "markers_removed", "uploads_aborted", "kept_by_lock",
                    "transitioned")


def status_rows(nodes: Sequence[Node], answers: dict[str, Any]) -> list[dict[str, Any]]:
    seen = mesh_views(answers)
    rows: list[dict[str, Any]] = []
    for node in nodes:
        reply = answers[node.id]
        row: dict[str, Any] = {"node": node.id, "site": node.site, "state": node.state.value,
               "seen_as": seen.get(node.id, "up"), "capacity": node.capacity}
        if isinstance(reply, str):
            row.update(reachable=False, error=reply)
        else:
            row.update(
                reachable=True, layout_version=reply.info.layout_version, chunks=reply.info.chunks,
                stored_bytes=reply.info.stored_bytes, disk_free=reply.disk_free, disk_total=reply.disk_total,
                peers={s: sum(1 for p in reply.peers if p.state == s) for s in ("up", "suspect", "down")},
                repair=repair_fields(reply.repair),
                scrub={"frames_checked": reply.scrub.frames_checked, "corrupt_found": reply.scrub.corrupt_found,
                       "passes": reply.scrub.passes_completed},
                gc={"tombstones_removed": reply.gc.tombstones_removed, "chunks_removed": reply.gc.chunks_removed},
                lifecycle={name: getattr(reply.lifecycle, name) for name in LIFECYCLE_FIELDS},
                energy=energy_fields(reply.energy))
        rows.append(row)
    return rows
