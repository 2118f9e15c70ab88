"""The contract between maillage nodes and their clients: the wire, not the logic behind it.

* `pb`, `rpc` — generated protobuf messages and gRPC stubs of `maillage.v1` (`maillage.proto`);
* `frame` — how one chunk is stored and sent (header + zstd or raw payload, BLAKE3-named);
* `bulk` — the raw-bytes methods and the PutObject stream's tags, encoder and decoder together;
* `limits` — sizes both sides agree on (chunk size, inline threshold, message cap);
* `reasons` — the vocabulary of error reasons a node sends and the SDK reads;
* `channels` — the one factory of gRPC channels (options, keepalive, backoff, credentials).

`pb` and `rpc` load on first use, so storage can use the frame codec without importing gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maillage.proto import maillage_pb2 as pb
    from maillage.proto import maillage_pb2_grpc as rpc

__all__ = ["pb", "rpc"]

_LAZY = {"pb": ".maillage_pb2", "rpc": ".maillage_pb2_grpc"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
