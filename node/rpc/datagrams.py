"""Membership over UDP: SWIM's probes and acks as sealed datagrams, gRPC when a datagram fails.

Why. Over gRPC every pair of nodes kept two TLS connections open for gossip alone (each peer is
probed every ~N periods): ~3.3 ms of CPU to open one, ~0.3 MB to keep it, ~10,000 opened while a
100-site mesh started (most of that start's CPU), and at 1,000 sites a peer's next probe comes
after the connection's idle limit, so nearly every probe would open a new one. A datagram
exchange costs no connection (memberlist, which runs Consul's thousands of nodes, probes over UDP
the same way).

How. Each node listens for datagrams on the UDP port of its gRPC address (same host, same
number). Two nodes seal their datagrams with the AES-GCM key they share (`PairKeys`: static ECDH
between the keys of their node certificates), learnt once per pair by a HELLO exchange carrying
each certificate, admitted as a TLS handshake would admit it (cluster CA, node usages, the layout's
pinned key). A probe carries a random request id and the sender's wall-clock time: the receiver
takes it only within `FRESH_SECONDS` of its own clock and only once (`_Replays`), so a recorded
probe of a node since dead cannot keep it "up"; an ack answers one pending request id of the node
it was sent to, or nothing. Answers go to the sender's address in the layout, never to the
datagram's source (no reflection), and only nodes of the current layout are answered at all.

Fallback. `DatagramTransport.heartbeat` waits for the ack `UDP_SHARE` of the probe's timeout, then
sends the same heartbeat over gRPC with the rest: a peer that UDP cannot reach (a firewall, an
older node, a lost datagram, a clock beyond the freshness window) is probed as before, never
suspected for it. A peer that answered over gRPC but not UDP `QUIET_AFTER` times in a row is
probed over gRPC alone for `QUIET_SECONDS`.

Bounds. A datagram is read only up to `MAX_DATAGRAM` bytes; a certificate not admitted before
costs a check, at most `ADMITS_PER_SECOND` of them; at most `MAX_HANDLING` probes are handled at
once (a ping-req waits for its own probe); the replay memory holds at most `MAX_REPLAYS` ids.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from maillage.node.replicas.replica import Replica
from maillage.node.replicas.transport import Heartbeat, Transport
from maillage.node.rpc import convert
from maillage.node.trust.documents import LayoutDoc
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import Node, UnknownNode
from maillage.proto import pb
from maillage.proto.trust.pairwise import PairError, PairKeys

__all__ = ["DatagramTransport", "MembershipDatagrams", "GossipHandler"]

log = logging.getLogger(__name__)

MAGIC = b"mg\x01"
HELLO, HELLO_REPLY, PROBE, ACK = 1, 2, 3, 4
MAX_DATAGRAM = 4096          # bytes read of one datagram: a heartbeat is ~100, a HELLO ~700
FRESH_SECONDS = 60.0         # a probe sent further from this node's clock is not taken (gRPC then)
MAX_REPLAYS = 50_000         # probe ids remembered (2 x FRESH_SECONDS); a probe is refused beyond
ADMITS_PER_SECOND = 50       # new certificates checked per second (each ~0.3 ms), bursts of 4x
MAX_HANDLING = 64            # probes handled at once; more are dropped (their senders use gRPC)
UDP_SHARE = 0.6              # of a probe's timeout, waited for its ack before gRPC takes the rest
QUIET_AFTER = 3              # gRPC answered where UDP did not, this many times in a row: ...
QUIET_SECONDS = 300.0        # ... use gRPC alone for that peer this long
_HEAD = struct.Struct(">3sBB")       # magic, kind, length of the sender's node id
_STAMP = struct.Struct(">8sQ")       # request id, sender's wall clock in ms
_NONCE = 12


class GossipHandler(Protocol):
    """What answers a probe: the SWIM loop (`membership.Gossip`)."""

    def on_heartbeat(self, beat: Heartbeat, *, round_trip: bool = True) -> Heartbeat: ...

    async def on_ping_req(self, beat: Heartbeat, *, round_trip: bool = True) -> Heartbeat: ...


class _Replays:
    """Probe ids taken within the freshness window: each is taken once. Ids older than twice the
    window are forgotten (a probe that old is refused for its time anyway)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, bytes], float] = {}
        self._pruned = 0.0

    def first_time(self, sender: str, request_id: bytes, now: float) -> bool:
        if now - self._pruned > FRESH_SECONDS or len(self._seen) >= MAX_REPLAYS:
            self._seen = {k: t for k, t in self._seen.items() if now - t < 2 * FRESH_SECONDS}
            self._pruned = now
            if len(self._seen) >= MAX_REPLAYS:
                return False
        if (sender, request_id) in self._seen:
            return False
        self._seen[(sender, request_id)] = now
        return True


class MembershipDatagrams(asyncio.DatagramProtocol):
    """This node's UDP endpoint for membership: sends probes and HELLOs, answers them."""

    def __init__(self, node_id: str, layout: LayoutState, keys: PairKeys, *,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self._layout = layout
        self._keys = keys
        self._wall = wall_clock
        self._handler: GossipHandler | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._shared: dict[str, AESGCM] = {}                  # node id -> the key shared with it
        self._pending: dict[tuple[str, int, bytes], asyncio.Future[bytes]] = {}  # (node, kind, id) -> answer
        self._replays = _Replays()
        self._handling = 0
        self._admits = (0.0, 0)   # (second, certificates checked in it)
        self._addresses: dict[str, tuple[str, tuple[str, int] | None]] = {}  # node -> (layout address, resolved)
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()   # what happened, for status and tests

    # ----- life cycle -------------------------------------------------------------------------

    async def start(self, address: str, handler: GossipHandler) -> None:
        """Listen on the UDP port of `address` ("host:port", the gRPC listen address)."""
        self._handler = handler
        host, port = _split(address)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for task in self._tasks:
            task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("membership datagrams closed"))

    @property
    def listening(self) -> bool:
        return self._transport is not None

    # ----- asking -----------------------------------------------------------------------------

    async def exchange(self, node_id: str, beat: Heartbeat, timeout: float) -> Heartbeat | None:
        """Send `beat` to `node_id` and return its answer, or None if none came within `timeout`."""
        address = await self._address(node_id)
        if address is None or self._transport is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        key = self._shared.get(node_id)
        if key is None:
            self.counts["hello_sent"] += 1
            cert = await self._ask(node_id, HELLO, self._keys.cert_der, address, timeout)
            if cert is None or (key := self._admit(cert, node_id)) is None:
                return None
            self._shared[node_id] = key
        answer = await self._ask(node_id, PROBE, convert.heartbeat_request_to_pb(beat).SerializeToString(),
                                 address, deadline - loop.time(), key=key)
        if answer is None:
            return None
        try:
            reply = convert.heartbeat_from_pb(pb.HeartbeatReply.FromString(answer))
        except Exception:  # malformed protobuf inside a sealed ack: the peer is broken, not us
            self.counts["dropped_malformed"] += 1
            return None
        if reply.node_id != node_id:
            self.counts["dropped_impersonation"] += 1
            return None
        self.counts["acked"] += 1
        return reply

    def forget(self, node_id: str) -> None:
        """Drop the key shared with `node_id` (its certificate may have changed): HELLO again."""
        self._shared.pop(node_id, None)

    async def _ask(self, node_id: str, kind: int, body: bytes, address: tuple[str, int], timeout: float, *,
                   key: AESGCM | None = None) -> bytes | None:
        if timeout <= 0 or self._transport is None:
            return None
        request_id = os.urandom(8)
        answer_kind = HELLO_REPLY if kind == HELLO else ACK
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[(node_id, answer_kind, request_id)] = future
        try:
            self._send(kind, request_id, body, address, key)
            return await asyncio.wait_for(future, timeout)
        except (TimeoutError, OSError):   # no answer in time, the socket refused, or closed
            return None
        finally:
            self._pending.pop((node_id, answer_kind, request_id), None)

    def _send(self, kind: int, request_id: bytes, body: bytes, address: tuple[str, int], key: AESGCM | None) -> None:
        sender = self.node_id.encode()
        head = _HEAD.pack(MAGIC, kind, len(sender)) + sender + _STAMP.pack(request_id, int(self._wall() * 1000))
        if key is not None:
            nonce = os.urandom(_NONCE)
            datagram = head + nonce + key.encrypt(nonce, body, head)
        else:
            datagram = head + body
        assert self._transport is not None
        self._transport.sendto(datagram, address)
        self.counts["sent"] += 1

    # ----- answering --------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            self._receive(data)
        except Exception:  # a datagram never ends the endpoint
            self.counts["dropped_error"] += 1
            log.exception("membership datagram dropped")

    def error_received(self, exc: Exception) -> None:
        self.counts["socket_errors"] += 1   # e.g. ICMP port unreachable for a peer not listening

    def _receive(self, data: bytes) -> None:
        if len(data) > MAX_DATAGRAM or len(data) < _HEAD.size:
            self.counts["dropped_size"] += 1
            return
        magic, kind, n = _HEAD.unpack_from(data)
        end = _HEAD.size + n
        if magic != MAGIC or len(data) < end + _STAMP.size:
            self.counts["dropped_malformed"] += 1
            return
        try:
            sender = data[_HEAD.size:end].decode()
        except UnicodeDecodeError:
            self.counts["dropped_malformed"] += 1
            return
        request_id, sent_ms = _STAMP.unpack_from(data, end)
        head, rest = data[:end + _STAMP.size], data[end + _STAMP.size:]
        if sender == self.node_id or self._node(sender) is None:
            self.counts["dropped_stranger"] += 1
            return
        if kind == HELLO:
            self._on_hello(sender, request_id, rest)
        elif kind == HELLO_REPLY:
            self._resolve(sender, kind, request_id, rest)
        elif kind in (PROBE, ACK):
            body = self._open(sender, head, rest)
            if body is None:
                return
            if kind == ACK:
                self._resolve(sender, kind, request_id, body)
            else:
                self._on_probe(sender, request_id, sent_ms, body)
        else:
            self.counts["dropped_malformed"] += 1

    def _open(self, sender: str, head: bytes, rest: bytes) -> bytes | None:
        key = self._shared.get(sender)
        if key is None or len(rest) < _NONCE + 16:
            self.counts["dropped_no_key"] += 1
            return None
        try:
            return key.decrypt(rest[:_NONCE], rest[_NONCE:], head)
        except InvalidTag:
            self.counts["dropped_forged"] += 1
            return None

    def _resolve(self, sender: str, kind: int, request_id: bytes, body: bytes) -> None:
        future = self._pending.get((sender, kind, request_id))
        if future is None or future.done():
            self.counts["dropped_unasked"] += 1
            return
        future.set_result(body)

    def _on_hello(self, sender: str, request_id: bytes, cert: bytes) -> None:
        key = self._admit(cert, sender)
        if key is None:
            return
        self._shared[sender] = key
        self._reply(sender, HELLO_REPLY, request_id, self._keys.cert_der, None)

    def _on_probe(self, sender: str, request_id: bytes, sent_ms: int, body: bytes) -> None:
        now = self._wall()
        if abs(now - sent_ms / 1000) > FRESH_SECONDS or not self._replays.first_time(sender, request_id, now):
            self.counts["dropped_stale"] += 1
            return
        if self._handling >= MAX_HANDLING or self._handler is None:
            self.counts["dropped_busy"] += 1
            return
        try:
            beat = convert.heartbeat_from_pb(pb.HeartbeatRequest.FromString(body))
        except Exception:
            self.counts["dropped_malformed"] += 1
            return
        if beat.node_id != sender:   # a node speaks only in its own name
            self.counts["dropped_impersonation"] += 1
            return
        self.counts["probes_answered"] += 1
        if not beat.probe:
            self._ack(sender, request_id, self._handler.on_heartbeat(beat, round_trip=False))  # may never arrive
            return
        self._handling += 1
        task = asyncio.get_running_loop().create_task(self._relay(sender, request_id, beat))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, sender: str, request_id: bytes, beat: Heartbeat) -> None:
        """A ping-req: probe the target for `sender`, then say whether it answered."""
        try:
            assert self._handler is not None
            reply = await self._handler.on_ping_req(beat, round_trip=False)
        except Exception:   # the asker hears nothing, and uses gRPC
            self.counts["dropped_error"] += 1
            log.exception("ping-req from %s failed", sender)
            return
        finally:
            self._handling -= 1
        self._ack(sender, request_id, reply)

    def _ack(self, sender: str, request_id: bytes, reply: Heartbeat) -> None:
        self._reply(sender, ACK, request_id, convert.heartbeat_reply_to_pb(reply).SerializeToString(),
                    self._shared.get(sender))

    def _reply(self, node_id: str, kind: int, request_id: bytes, body: bytes, key: AESGCM | None) -> None:
        """Answer at `node_id`'s address in the layout (an IP literal; a host name is answered once resolved)."""
        address = self._resolved(node_id)
        if address is not None and self._transport is not None:
            self._send(kind, request_id, body, address, key)

    # ----- peers ------------------------------------------------------------------------------

    def _node(self, node_id: str) -> Node | None:
        """`node_id` in the current layout; None for any other (strangers get no answer)."""
        try:
            return self._layout.current.node(node_id)
        except UnknownNode:
            return None

    def _admit(self, cert: bytes, node_id: str) -> AESGCM | None:
        """The key shared with `node_id` if `cert` is its certificate; None (counted) otherwise.
        Certificates not admitted before are checked at most `ADMITS_PER_SECOND` a second."""
        node = self._node(node_id)
        if node is None:   # left the layout while we waited for its HELLO
            return None
        pinned = node.cert_key
        key = self._keys.known(cert, node_id, pinned)
        if key is not None:
            return key
        second = int(time.monotonic())
        at, used = self._admits
        used = used if at == second else 0
        if used >= ADMITS_PER_SECOND:
            self.counts["dropped_admits_busy"] += 1
            return None
        self._admits = (second, used + 1)
        try:
            return self._keys.admit(cert, node_id, pinned)
        except PairError as err:
            self.counts["dropped_certificate"] += 1
            log.info("membership datagram from %s: certificate refused: %s", node_id, err)
            return None

    async def _address(self, node_id: str) -> tuple[str, int] | None:
        address = self._resolved(node_id)
        node = self._node(node_id)
        if address is not None or node is None:
            return address
        host, port = _split(node.address)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=2)  # SOCK_DGRAM
        except OSError:
            return None
        resolved = (str(infos[0][4][0]), port) if infos else None
        self._addresses[node_id] = (node.address, resolved)
        return resolved

    def _resolved(self, node_id: str) -> tuple[str, int] | None:
        """`node_id`'s UDP address from the current layout, if known without a lookup."""
        node = self._node(node_id)
        if node is None:
            return None
        known = self._addresses.get(node_id)
        if known is not None and known[0] == node.address:
            return known[1]
        host, port = _split(node.address)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None   # a host name: `_address` resolves it
        self._addresses[node_id] = (node.address, (host, port))
        return host, port


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class DatagramTransport:
    """A node's gossip transport: heartbeats over UDP first, everything else (and every heartbeat
    UDP did not answer in time) over the gRPC transport it wraps."""

    def __init__(self, inner: Transport, datagrams: MembershipDatagrams) -> None:
        self._inner = inner
        self.datagrams = datagrams
        self._misses: dict[str, int] = {}            # node -> gRPC answered where UDP did not, in a row
        self._quiet_until: dict[str, float] = {}     # node -> gRPC alone until (monotonic)

    def replica(self, node_id: str) -> Replica:
        return self._inner.replica(node_id)

    async def heartbeat(self, node_id: str, beat: Heartbeat, *, timeout: float) -> Heartbeat:
        loop = asyncio.get_running_loop()
        started = loop.time()
        use_udp = self.datagrams.listening and self._quiet_until.get(node_id, 0.0) <= started
        if use_udp:
            reply = await self.datagrams.exchange(node_id, beat, timeout * UDP_SHARE)
            if reply is not None:
                self._misses.pop(node_id, None)
                return reply
        reply = await self._inner.heartbeat(node_id, beat, timeout=max(0.05, timeout - (loop.time() - started)))
        if use_udp:   # gRPC reached it where UDP did not: its certificate may have changed, or UDP is blocked
            self.datagrams.forget(node_id)
            self.datagrams.counts["fell_back"] += 1
            misses = self._misses[node_id] = self._misses.get(node_id, 0) + 1
            if misses >= QUIET_AFTER:
                self._misses.pop(node_id, None)
                self._quiet_until[node_id] = loop.time() + QUIET_SECONDS
                log.info("no membership datagram answered by %s %d times in a row: gRPC alone for %.0f s",
                         node_id, QUIET_AFTER, QUIET_SECONDS)
        return reply

    async def fetch_layout(self, node_id: str, *, timeout: float, before: int = 0) -> LayoutDoc:
        return await self._inner.fetch_layout(node_id, timeout=timeout, before=before)

    async def fetch_access(self, node_id: str, *, timeout: float) -> LayoutDoc:
        return await self._inner.fetch_access(node_id, timeout=timeout)

    async def close(self) -> None:
        self.datagrams.close()
        await self._inner.close()
