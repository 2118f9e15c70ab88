"""A large object streams through every process holding only a few chunks in memory."""

from __future__ import annotations

import os

from maillage.client import Client
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

MiB = 1024 * 1024
OBJECT = 384 * MiB
ALLOWED_GROWTH = 160 * MiB   # far below the object size: proves streaming, not buffering


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def current_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_large_object_streams_with_bounded_memory(tmp_path):
    sites = (SiteSpec("a", "eu/fr/idf"), SiteSpec("b", "eu/fr/occitanie"), SiteSpec("c", "eu/de/bayern"))
    block = os.urandom(MiB)

    def body():
        for i in range(OBJECT // MiB):
            yield block[i % 7:] + block[:i % 7]  # distinct chunks, no dedup shortcut

    with LocalMesh(make_layout(sites), tmp_path) as mesh, Client(profile=mesh.profile) as c:
        c.create_bucket("big", "eu-wide")
        c.put_object("big", "warmup", b"x" * 100)
        baseline = {n: current_rss(p.pid) for n, p in mesh.processes.items()}
        client_baseline = current_rss(os.getpid())
        put = c.put_object("big", "large", body())
        assert put.size == OBJECT
        received = 0
        for piece in c.get_object("big", "large").iter_chunks():
            received += len(piece)
        assert received == OBJECT
        for node, proc in mesh.processes.items():
            growth = peak_rss(proc.pid) - baseline[node]
            assert growth < ALLOWED_GROWTH, f"node {node} grew by {growth / MiB:.0f} MiB"
        client_growth = current_rss(os.getpid()) - client_baseline
        assert client_growth < ALLOWED_GROWTH, f"client grew by {client_growth / MiB:.0f} MiB"
