"""Membership datagrams (node/rpc/datagrams.py): real UDP sockets on loopback, real certificates.

Two or three endpoints, each with its own node certificate of one cluster, answer probes through a
recording handler; a gRPC stand-in counts the heartbeats that fall back to it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maillage.node.replicas.transport import Heartbeat, Suspicion
from maillage.node.rpc import datagrams as dg
from maillage.node.rpc.datagrams import DatagramTransport, MembershipDatagrams
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import Layout
from maillage.proto.trust.identity import TlsIdentity, certificate_key, create_cluster, issue_node_certificate
from maillage.proto.trust.pairwise import PairError, PairKeys
from maillage.testing.forged import forge_node_certificate
from maillage.testing.localmesh import SiteSpec, make_layout

IDS = ("a", "b", "c")


def in_loop(test):
    """Run an async test in a fresh event loop (fixtures still reach it through the signature)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


class Recorder:
    """The gossip side of an endpoint: answers with its own heartbeat, records what it was told."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.heard: list[Heartbeat] = []
        self.transport: DatagramTransport | None = None

    def on_heartbeat(self, beat: Heartbeat, *, round_trip: bool = True) -> Heartbeat:
        assert not round_trip   # a datagram came one way: it must not count as a round trip
        self.heard.append(beat)
        return Heartbeat(self.node_id, 7, 3, 42, energy="green")

    async def on_ping_req(self, beat: Heartbeat, *, round_trip: bool = True) -> Heartbeat:
        assert not round_trip
        self.heard.append(beat)
        assert self.transport is not None
        try:
            await self.transport.heartbeat(beat.probe, Heartbeat(self.node_id, 7), timeout=0.5)
            acked = True
        except ConnectionError:
            acked = False
        return Heartbeat(self.node_id, 7, acked=acked)


class GrpcStandIn:
    """The wrapped gRPC transport: counts fallbacks; answers for nodes in `answers`, else refuses."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.answers: set[str] = set()

    def replica(self, node_id: str):  # pragma: no cover - not used here
        raise NotImplementedError

    async def heartbeat(self, node_id: str, beat: Heartbeat, *, timeout: float) -> Heartbeat:
        self.calls.append(node_id)
        if node_id in self.answers:
            return Heartbeat(node_id, 1)
        raise ConnectionError(f"{node_id} unreachable")

    async def close(self) -> None:
        pass


def _free_udp_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def cluster(tmp_path: Path):
    """A cluster dir, a trust dir per node, and a layout pinning each node's key."""
    cluster = create_cluster(tmp_path / "cluster", "test")
    for node_id in IDS:
        issue_node_certificate(cluster, node_id, tmp_path / "trust" / node_id)
    base = make_layout(tuple(SiteSpec(i, f"eu/fr/r{i}") for i in IDS))
    ports = _free_udp_ports(len(IDS))
    nodes = tuple(dataclasses.replace(n, address=f"127.0.0.1:{p}",
                                      cert_key=certificate_key(tmp_path / "trust" / n.id / "node.pem"))
                  for n, p in zip(base.nodes, ports, strict=True))
    return tmp_path, dataclasses.replace(base, nodes=nodes)


@contextlib.asynccontextmanager
async def endpoints(tmp_path: Path, layout: Layout, ids=IDS, *, trust=None):
    """node id -> (endpoint listening on its layout address, its recorder, its gRPC stand-in)."""
    made = {}
    for node_id in ids:
        identity = TlsIdentity.load_node((trust or {}).get(node_id, tmp_path / "trust" / node_id))
        state = LayoutState(tmp_path / f"layout-{node_id}.toml", layout)
        endpoint = MembershipDatagrams(node_id, state, PairKeys(identity))
        recorder = Recorder(node_id)
        grpc = GrpcStandIn()
        recorder.transport = DatagramTransport(grpc, endpoint)  # type: ignore[arg-type]
        await endpoint.start(layout.node(node_id).address, recorder)
        made[node_id] = (endpoint, recorder, grpc)
    try:
        yield made
    finally:
        for endpoint, _, _ in made.values():
            endpoint.close()


@in_loop
async def test_a_probe_and_its_ack_travel_sealed_over_udp_and_grpc_is_not_used(cluster):
    tmp_path, layout = cluster
    async with endpoints(tmp_path, layout) as made:
        a, _, a_grpc = made["a"]
        _, b_heard, _ = made["b"]
        beat = Heartbeat("a", 5, 2, 99, (Suspicion("c", 4),), energy="grey")
        for _ in range(3):
            reply = await made["a"][1].transport.heartbeat("b", beat, timeout=1.0)
            assert (reply.node_id, reply.layout_version, reply.access_version, reply.incarnation,
                    reply.energy) == ("b", 7, 3, 42, "green")
        assert b_heard.heard == [beat] * 3          # every field came through
        assert a_grpc.calls == []                   # nothing fell back to gRPC
        assert a.counts["hello_sent"] == 1          # one certificate exchange, then keys reused
        assert a.counts["acked"] == 3


@in_loop
async def test_a_ping_req_is_relayed_by_the_helper_and_answers_whether_the_target_acked(cluster):
    tmp_path, layout = cluster
    async with endpoints(tmp_path, layout) as made:
        transport = made["a"][1].transport
        reply = await transport.heartbeat("b", Heartbeat("a", 1, probe="c"), timeout=2.0)
        assert reply.acked and reply.node_id == "b"
        assert [h.node_id for h in made["c"][1].heard] == ["b"]   # the helper probed the target itself
        made["c"][0].close()                                     # the target stops answering
        reply = await transport.heartbeat("b", Heartbeat("a", 1, probe="c"), timeout=2.0)
        assert not reply.acked


@in_loop
async def test_a_peer_udp_cannot_reach_is_probed_over_grpc_and_then_over_grpc_alone(cluster):
    tmp_path, layout = cluster
    async with endpoints(tmp_path, layout, ids=("a",)) as made:   # b never listens on UDP
        endpoint, recorder, grpc = made["a"]
        grpc.answers.add("b")
        for _ in range(dg.QUIET_AFTER + 2):
            reply = await recorder.transport.heartbeat("b", Heartbeat("a", 1), timeout=0.2)
            assert reply.node_id == "b"
        assert grpc.calls == ["b"] * (dg.QUIET_AFTER + 2)   # never suspected for UDP's silence
        assert endpoint.counts["hello_sent"] == dg.QUIET_AFTER   # then gRPC alone, no more datagrams
        grpc.answers.clear()
        with pytest.raises(ConnectionError):   # a dead peer: both fail, the caller sees gRPC's failure
            await recorder.transport.heartbeat("b", Heartbeat("a", 1), timeout=0.2)


@in_loop
async def test_tampered_replayed_and_stranger_datagrams_are_dropped_and_never_heard(cluster):
    tmp_path, layout = cluster
    async with endpoints(tmp_path, layout) as made:
        a, a_rec, _ = made["a"]
        b, b_rec, _ = made["b"]
        sent: list[tuple[bytes, tuple[str, int]]] = []
        real_sendto = a._transport.sendto

        def capture(data, addr):
            sent.append((data, addr))
            real_sendto(data, addr)

        a._transport.sendto = capture  # type: ignore[method-assign]
        await a_rec.transport.heartbeat("b", Heartbeat("a", 1), timeout=1.0)
        assert len(b_rec.heard) == 1
        probe, b_addr = sent[-1]
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            raw.sendto(probe, b_addr)                                      # a replay
            raw.sendto(probe[:-1] + bytes([probe[-1] ^ 1]), b_addr)       # a flipped bit
            raw.sendto(probe.replace(b"\x01a", b"\x01c", 1), b_addr)       # another node's name
            raw.sendto(b"\x00" * 10, b_addr)                               # garbage
            raw.sendto(b"mg\x01" + bytes([3, 7]) + b"mallory" + b"\x00" * 60, b_addr)  # not in the layout
            raw.sendto(b"mg\x01" + b"\x03" * (dg.MAX_DATAGRAM + 10), b_addr)  # too large
            await asyncio.sleep(0.2)
        finally:
            raw.close()
        assert len(b_rec.heard) == 1                                       # none of them was taken
        counts = b.counts
        assert counts["dropped_stale"] == 1 and counts["dropped_forged"] >= 1
        assert counts["dropped_stranger"] == 1 and counts["dropped_size"] == 1
        assert counts["dropped_malformed"] + counts["dropped_no_key"] >= 2


@in_loop
async def test_a_probe_outside_the_freshness_window_is_not_taken(cluster, monkeypatch):
    tmp_path, layout = cluster
    async with endpoints(tmp_path, layout) as made:
        a, a_rec, a_grpc = made["a"]
        a._wall = lambda: 1e9   # a clock decades behind
        a_grpc.answers.add("b")
        reply = await a_rec.transport.heartbeat("b", Heartbeat("a", 1), timeout=0.3)
        assert reply.node_id == "b" and a_grpc.calls == ["b"]   # answered over gRPC instead
        assert made["b"][0].counts["dropped_stale"] == 1 and made["b"][1].heard == []


@in_loop
async def test_a_certificate_the_layout_does_not_pin_is_refused_even_from_the_cluster_ca(cluster):
    tmp_path, layout = cluster
    forged = forge_node_certificate(tmp_path / "cluster", "a", tmp_path / "forged-a")
    async with endpoints(tmp_path, layout, trust={"a": forged.directory}) as made:
        a, a_rec, a_grpc = made["a"]
        with pytest.raises(ConnectionError):
            await a_rec.transport.heartbeat("b", Heartbeat("a", 1), timeout=0.3)
        assert made["b"][0].counts["dropped_certificate"] == 1 and made["b"][1].heard == []


def test_pair_keys_agree_between_two_nodes_and_refuse_a_wrong_name_or_pin(cluster):
    tmp_path, layout = cluster
    a = PairKeys(TlsIdentity.load_node(tmp_path / "trust" / "a"))
    b = PairKeys(TlsIdentity.load_node(tmp_path / "trust" / "b"))
    ab = a.admit(b.cert_der, "b", layout.node("b").cert_key)
    ba = b.admit(a.cert_der, "a", layout.node("a").cert_key)
    nonce = b"\x00" * 12
    assert ba.decrypt(nonce, ab.encrypt(nonce, b"hello", b"head"), b"head") == b"hello"
    with pytest.raises(PairError, match="not a node certificate of 'c'"):
        a.admit(b.cert_der, "c", None)
    with pytest.raises(PairError, match="pins"):
        a.admit(b.cert_der, "b", layout.node("c").cert_key)
    with pytest.raises(PairError, match="not a certificate"):
        a.admit(b"junk", "b", None)
    other = create_cluster(tmp_path / "other", "other")
    issue_node_certificate(other, "b", tmp_path / "other-b")
    stranger = PairKeys(TlsIdentity.load_node(tmp_path / "other-b"))
    with pytest.raises(PairError, match="cluster CA"):
        a.admit(stranger.cert_der, "b", None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200),
                      st.builds(lambda kind, sender, rest: b"mg\x01" + bytes([kind, len(sender)]) + sender + rest,
                                st.integers(0, 255), st.sampled_from([b"a", b"b", b"c", b"zz", b"\xff"]),
                                st.binary(max_size=300))))
def test_no_datagram_makes_the_receiver_raise_or_hear_anything(cluster, data):
    tmp_path, layout = cluster
    heard = Recorder("b")
    endpoint = MembershipDatagrams("b", LayoutState(tmp_path / "layout-fuzz.toml", layout),
                                   PairKeys(TlsIdentity.load_node(tmp_path / "trust" / "b")))
    endpoint._handler = heard
    endpoint.datagram_received(data, ("127.0.0.1", 9))
    assert heard.heard == [] and endpoint.counts["dropped_error"] == 0
