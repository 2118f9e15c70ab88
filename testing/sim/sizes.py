"""How many bytes a call between nodes would put on the wire.

Heartbeats (SWIM probes, ping-reqs and their acks), the bulk of the control traffic, are sized
exactly: encoded as the gRPC transport encodes them (`node/rpc/convert.py`), `ByteSize()` of the
protobuf message. Every other call is estimated by walking its arguments or answer: bytes and
strings by their length plus a two-byte tag and length, numbers as varints or doubles,
dataclasses, tuples, lists and dicts by their parts (the field overhead of the real message is
within a few bytes per field). gRPC's own framing (5 bytes a message, HTTP/2 headers) is not counted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from maillage.node.replicas.transport import Heartbeat
from maillage.node.rpc.convert import heartbeat_request_to_pb

__all__ = ["varint_size", "heartbeat_size", "estimate"]


def varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def heartbeat_size(beat: Heartbeat) -> int:
    """The encoded size of `beat` as a HeartbeatRequest (a reply has the same fields, `acked`
    for `probe`: within a byte)."""
    return int(heartbeat_request_to_pb(beat).ByteSize())


def estimate(value: Any, depth: int = 0) -> int:
    """The approximate encoded size of a call's argument or answer."""
    if depth > 8 or value is None:
        return 0
    if isinstance(value, Heartbeat):
        return heartbeat_size(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 2 + len(value)
    if isinstance(value, str):
        return 2 + len(value.encode())
    if isinstance(value, bool):
        return 2
    if isinstance(value, int):
        return 1 + varint_size(abs(value))
    if isinstance(value, float):
        return 9
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return 2 + sum(estimate(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(estimate(k, depth + 1) + estimate(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(estimate(v, depth + 1) for v in value)
    return 8
