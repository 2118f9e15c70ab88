"""A rolling restart, as deploy/README.md tells operators to run it: every node of a live mesh is
stopped (SIGTERM) and started again, one after the other, while clients keep writing and reading
through the SDK; not one operation fails and every acknowledged write reads back unchanged.

The workload writes each value under a key of its own (so "acknowledged" has one meaning: that
key must then hold those bytes) and reads back keys already acknowledged, in both a France-only and
an EU-wide bucket (R=2 on 4 one-node sites). A node is "back" when every node, itself included,
answers GetStatus and sees it up: only then is the next one stopped.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest

from maillage.client import AsyncClient, Client
from maillage.client.admin import ClusterAdmin, mesh_views
from maillage.proto.channels import channel_options
from maillage.testing import eventually
from maillage.testing.localmesh import LocalMesh, make_layout
from maillage.testing.workload import decode_value, make_value

from .conftest import CHUNK, POLICIES, SITES

FAST = ("--chunk-size", str(CHUNK), "--heartbeat-interval", "0.3", "--suspect-after", "1.5",
        "--down-after", "60", "--repair-interval", "1")
BUCKETS = ("rr-france", "rr-eu")
SEED = 24
BACK_WITHIN = 30.0  # seconds for a restarted node to be seen up by every node
# Peers and clients whose calls a stopped node refused retry its address at most this often (their
# channels' reconnect backoff): until then their calls to it fail at once, so the next node may stop
# only once the restarted one has been seen up for longer (deploy/README.md, rolling restart).
# gRPC adds up to 20 % of jitter to the backoff.
SETTLE = dict(channel_options())["grpc.max_reconnect_backoff_ms"] / 1000 * 1.2 + 0.5


@dataclass
class Traffic:
    """Writers putting fresh keys and readers reading acknowledged ones, until stopped."""

    mesh: LocalMesh
    writers: int = 2
    readers: int = 2
    acked: dict[tuple[str, str], bytes] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    reads: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="traffic", daemon=True)
        self._seq = 0

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the workload did not stop"

    def ops(self) -> int:
        return len(self.acked) + self.reads

    async def _run(self) -> None:
        async with AsyncClient(profile=self.mesh.profile, timeout=10) as client:
            await asyncio.gather(*(self._write(client, w) for w in range(self.writers)),
                                 *(self._read(client, r) for r in range(self.readers)))

    async def _write(self, client: AsyncClient, worker: int) -> None:
        while not self._stop.is_set():
            self._seq += 1
            seq = self._seq
            bucket = BUCKETS[seq % len(BUCKETS)]
            key = f"w{worker}/{seq:06d}"
            # one value in five spans chunks (up to 200 KB over 256 KiB chunks: one or two)
            data = make_value(SEED, bucket, key, seq)
            try:
                await client.put_object(bucket, key, data)
            except Exception as exc:
                self.failures.append(f"put {bucket}/{key}: {type(exc).__name__}: {exc}")
            else:
                self.acked[(bucket, key)] = data
            await asyncio.sleep(0.005)

    async def _read(self, client: AsyncClient, worker: int) -> None:
        rng = random.Random(f"{SEED}:{worker}")
        while not self._stop.is_set():
            if not self.acked:
                await asyncio.sleep(0.05)
                continue
            bucket, key = rng.choice(list(self.acked))
            try:
                data = await (await client.get_object(bucket, key)).read()
                decode_value(data)  # bytes some write of this workload produced...
                if data != self.acked[(bucket, key)]:  # ...and exactly the acknowledged ones
                    self.failures.append(f"get {bucket}/{key}: other bytes than acknowledged")
                self.reads += 1
            except Exception as exc:
                self.failures.append(f"get {bucket}/{key}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.005)


def seen_up_by_all(admin: ClusterAdmin, node_id: str) -> bool:
    """Every node answers its status, and the worst view any of them has of `node_id` is up."""
    answers = admin.statuses(timeout=2.0)
    if any(isinstance(reply, str) for reply in answers.values()):
        return False
    return mesh_views(answers).get(node_id, "up") == "up"


def back_for_everyone(admin: ClusterAdmin, node_id: str, since: list[float]) -> bool:
    """`node_id` seen up by every node, continuously for longer than the reconnect backoff (`since`
    holds when that began; a view that is not up starts it again)."""
    if not seen_up_by_all(admin, node_id):
        since.clear()
        return False
    if not since:
        since.append(time.monotonic())
    return time.monotonic() - since[0] > SETTLE


@pytest.mark.timeout(120)
def test_rolling_restart_loses_nothing(tmp_path):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path, extra_args=FAST) as mesh:
        with Client(profile=mesh.profile) as client:
            client.create_bucket("rr-france", "france-only")
            client.create_bucket("rr-eu", "eu-wide")
        traffic = Traffic(mesh).start()
        try:
            with mesh.admin() as admin:
                eventually(lambda: traffic.ops() >= 20, timeout=20, what="the workload running")
                for node in mesh.layout.nodes:
                    proc = mesh.processes[node.id]
                    before = traffic.ops()
                    mesh.kill(node.id, signal.SIGTERM)  # waits for the exit
                    assert proc.returncode == 0, f"{node.id} exited {proc.returncode}:\n{mesh.tail_log(node.id)}"
                    mesh.start_node(node.id)
                    since: list[float] = []
                    eventually(lambda n=node.id, s=since: back_for_everyone(admin, n, s), timeout=BACK_WITHIN,
                               what=f"{node.id} seen up by every node for {SETTLE:g} s after its restart")
                    # the workload ran through this restart, not around it
                    eventually(lambda b=before: traffic.ops() >= b + 10, timeout=20,
                               what=f"operations going on after {node.id}'s restart")
        finally:
            traffic.stop()
        logs = "\n".join(f"--- {n.id}\n{mesh.tail_log(n.id, 15)}" for n in mesh.layout.nodes)
        assert traffic.failures == [], f"{len(traffic.failures)} failed operations:\n" + "\n".join(
            traffic.failures[:20]) + "\n" + logs
        assert len(traffic.acked) >= 40 and traffic.reads >= 40, (len(traffic.acked), traffic.reads)
        started = time.monotonic()
        with Client(profile=mesh.profile) as client:
            lost = [f"{b}/{k}" for (b, k), data in traffic.acked.items()
                    if client.get_object(b, k).read() != data]
        assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:20]}"
        print(f"rolling restart of {len(mesh.layout.nodes)} nodes: {len(traffic.acked)} writes, "
              f"{traffic.reads} reads, 0 failed; read back in {time.monotonic() - started:.1f} s")
