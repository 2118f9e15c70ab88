"""`--s3-access-log FILE`: one JSON line per S3 request, for operations and billing.

A line holds when, who (remote address, access key id), what (method, operation outcome: status,
bytes in and out, milliseconds), the request id shared with the node log and with the peers that
served it, and the node a forwarded request went to. The bucket and key names are written only when
this node is inside the bucket's policy (`names_rest_here`): a German door forwarding a request
for a France-only bucket writes the line without them, as it writes no key name in its node log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["AccessLog"]


class AccessLog:
    def __init__(self, path: str | Path) -> None:
        self._file: TextIO = open(path, "a", buffering=1, encoding="utf-8")  # a line a request

    def write(self, *, request_id: str, remote: str | None, method: str, key_id: str, status: int,
              bytes_in: int | None, bytes_out: int | None, started: float, forwarded_to: str | None,
              names: tuple[str, str] | None) -> None:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "request_id": request_id, "remote": remote or "", "method": method, "key_id": key_id,
            "status": status, "bytes_in": bytes_in or 0, "bytes_out": bytes_out or 0,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        if forwarded_to:
            entry["forwarded_to"] = forwarded_to
        if names is not None:
            entry["bucket"], entry["key"] = names
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()
