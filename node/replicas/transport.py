"""How a node reaches its peers: the seam between the node's logic and the network.

The coordinator, the quorum rules, the catalog, repair, GC and gossip never open a connection:
they ask a `Transport` for "the replica handle of node X", or to send node X a heartbeat (a SWIM
probe or ping-req) or fetch its layout or access document. `peers.GrpcTransport` does it over
gRPC; `maillage.testing.inmemory` routes the same calls to other nodes' `LocalReplica` objects in
one process, so tests drive the whole node logic over real stores without processes, ports or sleeps.

`Peers` puts this node's own store in front of a transport: `peers.replica(node_id)` is the local
replica for this node (no loopback round trip) and the transport's handle for any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from maillage.node.replicas.replica import LocalReplica, Replica

if TYPE_CHECKING:
    from maillage.node.trust.documents import LayoutDoc

__all__ = ["MAX_NEWS", "Heartbeat", "PeerView", "Suspicion", "Transport", "Peers"]


MAX_NEWS = 8   # suspicions one heartbeat may carry; a receiver reads no more than this


@dataclass(frozen=True)
class PeerView:
    """What one node thinks of another (status): its state and how long it has been suspected."""
    node_id: str
    state: str
    silent_seconds: float


@dataclass(frozen=True)
class Suspicion:
    """"I probed `node_id` at this incarnation and neither it nor the peers I asked got an answer"."""
    node_id: str
    incarnation: int


@dataclass(frozen=True)
class Heartbeat:
    """A SWIM probe and its ack: the sender, its document versions, its own incarnation and a few
    piggybacked suspicions (at most `MAX_NEWS`). `probe` set: a ping-req, asking the
    receiver to probe that node; `acked` in the reply says whether it answered. `energy`: a few
    bytes that let readers and background work prefer a site with power to spare (issue 26)."""
    node_id: str
    layout_version: int
    access_version: int = 0
    incarnation: int = 0
    suspects: tuple[Suspicion, ...] = field(default=())
    probe: str = ""
    acked: bool = False
    energy: str = ""    # the sender's site's energy state, as its own scheduler sees it ("": unknown)


class Transport(Protocol):
    """Calls to other nodes. Every call may raise the node's typed errors (`PeerUnavailable` when
    the peer does not answer) or `UnknownNode` for a node the layout does not have."""

    def replica(self, node_id: str) -> Replica:
        """The replica handle of another node (cheap: cached, or built on the fly)."""
        ...

    async def heartbeat(self, node_id: str, beat: Heartbeat, *, timeout: float) -> Heartbeat:
        """Send our heartbeat (a probe, or a ping-req when `beat.probe` is set) to `node_id`; its
        reply is its ack."""
        ...

    async def fetch_layout(self, node_id: str, *, timeout: float, before: int = 0) -> LayoutDoc:
        """The signed layout document `node_id` holds (checked by the caller); with `before`, the
        newest it kept below that version (empty text: none)."""
        ...

    async def fetch_access(self, node_id: str, *, timeout: float) -> LayoutDoc:
        """The signed access document `node_id` holds (checked by the caller)."""
        ...

    async def close(self) -> None: ...


class Peers:
    """This node's replica plus a transport to the others."""

    def __init__(self, local: LocalReplica, transport: Transport) -> None:
        self.local = local
        self.transport = transport

    def replica(self, node_id: str) -> Replica:
        if node_id == self.local.node_id:
            return self.local
        return self.transport.replica(node_id)

    async def close(self) -> None:
        await self.transport.close()
