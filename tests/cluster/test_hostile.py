"""Hostile uploads against a real node: many callers each sending one huge message and then hanging
must not make the node hold their bytes (issue 14, finding 7: 16 x 60 MiB took a node to 2 GiB)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from maillage.client import Client
from maillage.proto import bulk, pb
from maillage.proto.channels import open_channel
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import TlsIdentity

from .conftest import CHUNK

CALLERS = 16
MESSAGE = 60 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_sixteen_callers_sending_one_huge_message_and_hanging_leave_the_node_small(mesh):
    node = "toulouse-1"
    with Client(profile=mesh.profile) as c:
        c.create_bucket("hostile", "eu-wide")
    pid = mesh.processes[node].pid
    key = mesh.profile.credentials
    tls = TlsIdentity.load_client(mesh.cluster_dir)
    before = rss_bytes(pid)
    peak = before

    async def one(payload: bytes, hang: asyncio.Event) -> grpc.StatusCode:
        first = bulk.header_message(pb.PutObjectHeader(bucket="hostile", key="huge"))

        async def messages():
            yield first
            yield bulk.data_message(payload)
            await hang.wait()                      # and never finish the stream

        async with open_channel(mesh.address(node), tls=tls, peer=node) as channel:
            call = channel.stream_unary(bulk.PUT_OBJECT, request_serializer=None, response_deserializer=None)
            try:
                await call(messages(), timeout=20, metadata=requestauth.sign(bulk.PUT_OBJECT, key.key_id, key.secret,
                                                                             target=node, body=first))
            except grpc.RpcError as err:
                return err.code()
        return grpc.StatusCode.OK

    async def attack() -> list[grpc.StatusCode]:
        nonlocal peak
        payload = b"\x00" * MESSAGE
        hang = asyncio.Event()
        calls = [asyncio.ensure_future(one(payload, hang)) for _ in range(CALLERS)]
        while not all(c.done() for c in calls):
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.05)   # sampling period of the node's RSS, not a wait for a result
        hang.set()
        return [c.result() for c in calls]

    codes = asyncio.run(attack())
    assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    growth = peak - before
    assert growth < 200 * 1024 * 1024, f"the node grew by {growth / 2**20:.0f} MiB under the attack"
    assert mesh.processes[node].poll() is None, "the node survived"
    assert CHUNK < MESSAGE
