"""The local mesh every harness measurement runs on: N sites on loopback, one policy with R=2.

Sites are spread over a few regions of two countries, like a small real mesh, but the policy
(`bench-r2`) allows all of them: the figures measure the data path, not residency filtering.
Nodes always run with fsync on: figures without it would not be the store's.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from maillage.client import AsyncClient, BucketAlreadyExists, NodeUnavailable, QuorumNotReached
from maillage.placement import Layout, Policy
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

__all__ = ["POLICY", "BUCKET", "bench_layout", "open_mesh", "ready_bucket", "node_pids", "UNITS", "parse_size",
           "format_size"]

POLICY = "bench-r2"
BUCKET = "bench"
_LOCATIONS = ("eu/fr/idf", "eu/fr/occitanie", "eu/de/bayern", "eu/fr/ara", "eu/de/berlin",
              "eu/fr/bretagne", "eu/de/hamburg", "eu/fr/grand-est")
UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def bench_layout(sites: int = 3, replicas: int = 2) -> Layout:
    specs = tuple(SiteSpec(f"site-{chr(ord('a') + i)}", _LOCATIONS[i % len(_LOCATIONS)]) for i in range(sites))
    return make_layout(specs, (Policy(name=POLICY, allow=(("eu",),), replicas=replicas),))


def open_mesh(sites: int, base_dir: Path | None = None, extra_args: tuple[str, ...] = (), *,
              insecure_plaintext: bool = False, ops: bool = False) -> LocalMesh:
    """A LocalMesh (not started: use it as a context manager) with fsync on; TLS and authentication
    on unless `insecure_plaintext` (to measure what they cost)."""
    if "--no-fsync" in extra_args:
        raise ValueError("benchmark figures are taken with fsync on")
    return LocalMesh(bench_layout(sites), base_dir=base_dir, extra_args=extra_args,
                     insecure_plaintext=insecure_plaintext, ops=ops)


async def ready_bucket(client: AsyncClient, timeout: float = 30.0) -> None:
    """Create the bench bucket once the mesh takes writes through every coordinator.

    A node listening is not yet a mesh that acknowledges on two sites: a node's peer channels may
    still be backing off from a refused first connection. So create the bucket, then PUT probes
    until 2 x nodes in a row succeed (the client rotates coordinators, so each node coordinates
    at least one of them).
    """
    deadline = time.monotonic() + timeout
    created, streak, i = False, 0, 0
    needed = 2 * len((await client.layout()).nodes)
    while streak < needed:
        try:
            if not created:
                try:
                    await client.create_bucket(BUCKET, POLICY)
                except BucketAlreadyExists:
                    pass
                created = True
            i += 1
            await client.put_object(BUCKET, f"ready-probe/{i}", b"ready")
            streak += 1
        except (NodeUnavailable, QuorumNotReached):
            if time.monotonic() > deadline:
                raise
            streak = 0
            await asyncio.sleep(0.2)


def node_pids(mesh: LocalMesh) -> dict[str, int]:
    """Live node processes by node id (a restarted node shows its new pid)."""
    return {node_id: proc.pid for node_id, proc in mesh.processes.items() if proc.poll() is None}


def with_client(pids: dict[str, int]) -> dict[str, int]:
    return {**pids, "client": os.getpid()}


def parse_size(text: str) -> int:
    """'4K', '1MiB', '64M', '1GiB', '4096' -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    if not t:
        raise ValueError(f"not a size: {text!r}")
    return int(float(t[:-1]) * UNITS[t[-1]]) if t[-1] in UNITS else int(t)


def format_size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"
