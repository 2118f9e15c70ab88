"""Repair time: how long a wiped node takes to get its data back from the others.

    python -m maillage.benchmarks.repair [--sites 3,5] [--data 1GiB] [--object-size 4MiB]

For each mesh size N: start N sites (R=2) whose nodes run anti-entropy every `--repair-interval`
seconds under a `--repair-rate` cap, load D bytes of unique objects, note what the victim node
(the first one) holds (`Replica.Inventory`: chunk digests and manifest keys), then SIGKILL it,
delete its data directory and start it again, empty. Nothing else is done to help it: the repair
must come from the nodes' own background anti-entropy.

Every `poll` seconds (0.25) the harness asks the victim for its inventory and records its progress
(chunks and manifests it holds again); once it holds everything, the other nodes' inventories too,
to count the items the mesh holds on fewer than R nodes. The victim is repaired when it holds again
everything it held and no item is short of R copies: the clock stops at that observation. The
mesh-wide audit (`maillage.client.admin.collect_audit`) must then agree (`fully_replicated`); it
runs after the clock stopped (its own time is `audit_s`). A repair that does not finish within
`timeout` is a figure too ("did not converge within T s", with the progress reached), never a crash.

Repair MB/s = bytes the victim held before the wipe / repair time. With N sites the victim's
data has N-1 possible sources, so the time should fall as N grows until the victim's own disk
write speed bounds it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from maillage.benchmarks.machine import cpu_seconds
from maillage.benchmarks.mesh import BUCKET, format_size, open_mesh, parse_size, ready_bucket
from maillage.benchmarks.throughput import UniqueBodies
from maillage.client import AsyncClient, NodeUnavailable, Profile, QuorumNotReached
from maillage.proto import pb
from maillage.proto.channels import open_channel
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import TlsIdentity

__all__ = ["REPAIR_RATE", "measure_repair", "run", "main"]

_INVENTORY_MESSAGE = 256 << 20
#: Node --repair-rate (MB/s) while measuring: above the disk, so the figure is the repair, not the cap.
REPAIR_RATE = 2000.0
# The reply of each method the probe calls (it sends requests as the bytes it signed).
_REPLIES: dict[str, type[Message]] = {"Inventory": pb.InventoryReply, "GetInfo": pb.NodeInfo,
                                      "GetStatus": pb.NodeStatus}


async def _load(profile: Profile, data_bytes: int, object_size: int, concurrency: int = 4) -> dict:
    count = max(1, data_bytes // object_size)
    bodies = UniqueBodies(object_size)
    began, cpu0, retries = time.monotonic(), cpu_seconds(), [0]
    async with AsyncClient(profile=profile) as client:
        await ready_bucket(client)
        todo = iter(range(count))

        async def worker() -> None:
            buf = bodies.buffer()
            for _ in todo:
                serial = bodies.stamp(buf)
                for attempt in range(3):  # a refused write is retried, and counted
                    try:
                        await client.put_object(BUCKET, f"repair/{serial}", buf)
                        break
                    except (NodeUnavailable, QuorumNotReached):
                        retries[0] += 1
                        if attempt == 2:
                            raise
                        await asyncio.sleep(0.5)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    return {"objects": count, "object_size": object_size, "bytes": count * object_size,
            "seconds": round(elapsed, 3), "put_mb_per_s": round(count * object_size / elapsed / 1e6, 2),
            "client_cpu_s": round(cpu_seconds() - cpu0, 3), "retried_puts": retries[0]}


class _Probe:
    """Inventories and node info over long-lived channels (they reconnect to a restarted node),
    mutual TLS with the admin profile's trust dir, each call signed with its admin key."""

    def __init__(self, addresses: dict[str, str], admin: Profile) -> None:
        tls = TlsIdentity.load_client(admin.trust_dir)
        self._key = admin.credentials
        self._channels = {n: open_channel(a, tls=tls, peer=n, max_receive=_INVENTORY_MESSAGE)
                          for n, a in addresses.items()}

    async def _call(self, node_id: str, service: str, method: str, request: Message, timeout: float) -> Any:
        """One call signed for `node_id`, over the bytes it sends (a signature binds both)."""
        body = request.SerializeToString()
        metadata = requestauth.sign(f"/maillage.v1.{service}/{method}", self._key.key_id, self._key.secret,
                                    target=node_id, body=body)
        call = self._channels[node_id].unary_unary(f"/maillage.v1.{service}/{method}", request_serializer=None,
                                                   response_deserializer=_REPLIES[method].FromString)
        return await call(body, timeout=timeout, metadata=metadata)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(grace=None)

    async def inventory(self, node_id: str) -> tuple[set[bytes], set[tuple[str, str]]] | None:
        try:
            reply = await self._call(node_id, "Replica", "Inventory", pb.InventoryRequest(), 20)
        except grpc.RpcError:
            return None
        return set(reply.all_chunks), {(b.bucket, k) for b in reply.buckets for k in b.keys}

    async def stored_bytes(self, node_id: str) -> int | None:
        try:
            info: pb.NodeInfo = await self._call(node_id, "Cluster", "GetInfo", pb.GetInfoRequest(), 5)
            return info.stored_bytes
        except grpc.RpcError:
            return None

    async def repair_status(self, node_id: str) -> dict | None:
        """The node's own repair counters, when it implements GetStatus."""
        try:
            status = await self._call(node_id, "Cluster", "GetStatus", pb.GetStatusRequest(), 5)
        except grpc.RpcError:
            return None
        r = status.repair
        return {"rounds_completed": r.rounds_completed, "items_copied": r.items_copied,
                "bytes_copied": r.bytes_copied, "groups_behind": r.groups_behind}


def _short_of_r(inventories: dict[str, tuple[set, set]], replicas: int) -> int:
    """Items (chunks, manifests) the answering nodes hold fewer than R copies of."""
    holders: dict[object, int] = {}
    for chunks, keys in inventories.values():
        for item in (*chunks, *keys):
            holders[item] = holders.get(item, 0) + 1
    return sum(1 for n in holders.values() if n < replicas)


def _audit(admin: Profile) -> dict:
    try:
        from maillage.client.admin import collect_audit
    except ImportError as exc:
        return {"available": False, "error": str(exc)}
    try:
        report = collect_audit(admin)
    except Exception as exc:  # the audit is a second opinion: its failure is reported, not fatal
        return {"available": True, "error": f"{type(exc).__name__}: {exc}"}
    return {"available": True, "fully_replicated": report.fully_replicated,
            "under_replicated": report.under_replicated, "ok": report.ok}


async def measure_repair(sites: int, data_bytes: int, *, object_size: int = 4 << 20, repair_rate: float = REPAIR_RATE,
                         repair_interval: float = 1.0, timeout: float = 180.0, poll: float = 0.25,
                         base_dir: Path | None = None, step: Callable[[str], None] | None = None) -> dict:
    say = step or (lambda text: None)
    extra = ("--repair-interval", f"{repair_interval:g}", "--repair-rate", f"{repair_rate:g}")
    params = {"sites": sites, "replicas": 2, "data_bytes": data_bytes, "object_size": object_size,
              "repair_rate_mb_s": repair_rate, "repair_interval_s": repair_interval, "timeout_s": timeout}
    with open_mesh(sites, base_dir, extra) as mesh:
        say(f"repair N={sites}: load {format_size(data_bytes)}")
        load = await _load(mesh.profile, data_bytes, object_size)
        probe = _Probe({n.id: n.address for n in mesh.layout.nodes}, mesh.admin_profile)
        try:
            # The victim: the node holding the most (with little data, e.g. two chunks on two of
            # three nodes, the first node may hold none, and there would be nothing to repair).
            held = {n.id: await probe.stored_bytes(n.id) or 0 for n in mesh.layout.nodes}
            victim = max(held, key=lambda n: held[n])
            others = [n for n in held if n != victim]
            before = await probe.inventory(victim)
            victim_bytes = held[victim]
            if before is None:
                raise RuntimeError(f"victim {victim} did not answer Inventory before the wipe")
            want_chunks, want_keys = before
            say(f"repair N={sites}: wipe {victim} ({len(want_chunks)} chunks, {len(want_keys)} manifests, "
                f"{victim_bytes / 1e6:,.0f} MB) and restart it")
            mesh.kill(victim)
            shutil.rmtree(mesh.data_dir(victim))
            await asyncio.to_thread(mesh.start_node, victim)
            began = time.monotonic()
            series, converged, last = [], False, {}
            while True:
                now = time.monotonic() - began
                # The victim's own inventory first (one call); the others' only once it holds
                # everything again, to count what is still short of R copies.
                mine = await probe.inventory(victim)
                have_chunks, have_keys = mine or (set(), set())
                complete = mine is not None and want_chunks <= have_chunks and want_keys <= have_keys
                inventories = {victim: mine} if mine is not None else {}
                if complete:
                    inventories.update({n: inv for n in others if (inv := await probe.inventory(n)) is not None})
                last = {"t": round(now, 2),
                        "chunks": len(want_chunks & have_chunks), "manifests": len(want_keys & have_keys),
                        "fraction": round((len(want_chunks & have_chunks) + len(want_keys & have_keys))
                                          / max(1, len(want_chunks) + len(want_keys)), 4),
                        "short_of_r": _short_of_r(inventories, 2) if complete else None,
                        "nodes_answering": len(inventories)}
                series.append(last)
                if complete and last["short_of_r"] == 0 and len(inventories) == sites:
                    converged = True  # repaired, as of this observation
                    break
                if now > timeout:
                    break
                await asyncio.sleep(poll)
            seconds = time.monotonic() - began
            # A second opinion, after the clock stopped: the cluster audit (its time is not repair time)
            audit_began = time.monotonic()
            audit = await asyncio.to_thread(_audit, mesh.admin_profile)
            audit_s = time.monotonic() - audit_began
            converged = converged and bool(audit.get("fully_replicated", True) or "error" in audit)
            statuses = {n: await probe.repair_status(n) for n in (victim, *others)}
        finally:
            await probe.close()
    result = {"params": params, "load": load, "victim": victim, "sources": sites - 1,
              "victim_bytes": victim_bytes, "victim_chunks": len(want_chunks), "victim_manifests": len(want_keys),
              "converged": converged, "seconds": round(seconds, 2) if converged else None,
              "waited_s": round(seconds, 2), "reached_fraction": last.get("fraction", 0.0),
              "mb_per_s": round(victim_bytes / seconds / 1e6, 2) if converged and seconds > 0 else None,
              "series": series, "audit": audit, "audit_s": round(audit_s, 2), "node_repair_status": statuses}
    if not converged:
        result["note"] = (f"did not converge within {timeout:g} s: the victim holds again "
                          f"{last.get('fraction', 0):.1%} of its items, {last.get('short_of_r', '?')} items "
                          "are still short of R copies")
    return result


def format_result(r: dict) -> str:
    head = (f"repair N={r['params']['sites']} ({r['sources']} sources), "
            f"{r['victim_bytes'] / 1e6:,.0f} MB on the victim: ")
    if r["converged"]:
        return head + f"{r['seconds']:.1f} s, {r['mb_per_s']:,.1f} MB/s"
    return head + r["note"]


def run(sites: Sequence[int] = (3,), data_bytes: int = 1 << 30, **kwargs) -> list[dict]:
    results = []
    for n in sites:
        results.append(asyncio.run(measure_repair(n, data_bytes, **kwargs,
                                                  step=lambda t: print("...", t, file=sys.stderr, flush=True))))
        print(format_result(results[-1]), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.repair", description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="3", help="mesh sizes, e.g. 3,5")
    parser.add_argument("--data", default="1GiB", help="bytes loaded before the wipe")
    parser.add_argument("--object-size", default="4MiB")
    parser.add_argument("--repair-rate", type=float, default=REPAIR_RATE,
                        help=f"node flag --repair-rate in MB/s (default {REPAIR_RATE:g}: above the disk, so the "
                             "figure is the repair, not the cap)")
    parser.add_argument("--repair-interval", type=float, default=1.0, help="node flag --repair-interval (s)")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    results = run(tuple(int(s) for s in args.sites.split(",")), parse_size(args.data),
                  object_size=parse_size(args.object_size), repair_rate=args.repair_rate,
                  repair_interval=args.repair_interval, timeout=args.timeout)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
