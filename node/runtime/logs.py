"""How a node writes its log: text for a terminal, or one JSON object per line for a log pipeline.

Every line carries the node id and the current request's id (`request_ids`), so one request is
followed across the nodes it touched. What a line says is the caller's business: modules keep key
names out of lines written where the key's bucket policy does not reach (the S3 door's `OUTSIDE`
requests, for instance); this module adds no name of anything stored.
"""

from __future__ import annotations

import json
import logging
import time

from maillage.node.runtime.request_ids import REQUEST_ID

__all__ = ["FORMATS", "JsonFormatter", "RequestIdFilter", "configure"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps every record with the node id and the current request id ('-' outside a request)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node_id
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "node", "request_id", "message"[, "error"]} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "node": getattr(record, "node", ""),
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, fmt: str, node_id: str) -> None:
    """The root logger of a node process: `fmt` "text" or "json", on stderr."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter(node_id))
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
