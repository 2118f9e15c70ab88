"""Open files: raise the process's soft limit, and keep a reserve the S3 port can never use.

Every connection, chunk file and RocksDB file is a file descriptor. When a flood of connections to
the S3 port used up the default soft limit (often 1,024), the gRPC port failed too ("File
descriptor limit reached"), and with it the node's part in replication. So a node raises its soft
limit to the hard limit at start (and says so), and the S3 door's connection cap is bounded so
that `RESERVED_FDS` stay for the gRPC port, the stores and the peers whatever the S3 port does. The
gRPC port's cap is bounded in turn so that `OTHER_FDS` stay for the stores and the node's own
channels whatever both ports do.
"""

from __future__ import annotations

import logging
import resource

__all__ = ["OTHER_FDS", "RESERVED_FDS", "grpc_connection_cap", "raise_open_files_limit", "s3_connection_cap"]

log = logging.getLogger(__name__)

#: File descriptors kept for everything but the S3 port: gRPC connections from clients and peers,
#: chunk files being read or written, RocksDB's files, the node's own channels.
RESERVED_FDS = 1024
#: File descriptors kept for neither port: chunk files, RocksDB's files, the node's own channels.
OTHER_FDS = 512


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target <= soft:
        log.info("open files limit %d -> %d (already the hard limit)", soft, soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as err:
        log.warning("open files limit %d -> %d (could not raise it to %d: %s)", soft, soft, target, err)
        return soft
    log.info("open files limit %d -> %d (the hard limit)", soft, target)
    return target


def s3_connection_cap(wanted: int, soft_limit: int) -> int:
    """The S3 door's connection cap: `wanted`, but never into the reserve of the other ports."""
    cap = min(wanted, soft_limit - RESERVED_FDS)
    if cap < wanted:
        log.warning("S3 connections capped at %d (open files limit %d, %d kept for gRPC and the stores)",
                    max(cap, 16), soft_limit, RESERVED_FDS)
    return max(cap, 16)


def grpc_connection_cap(wanted: int, soft_limit: int, s3_cap: int) -> int:
    """The gRPC port's connection cap: `wanted`, but never into what the S3 port (`s3_cap`, 0
    without one) and the stores (`OTHER_FDS`) may use."""
    cap = max(min(wanted, soft_limit - s3_cap - OTHER_FDS), min(wanted, 64))
    if cap < wanted:
        log.warning("gRPC connections capped at %d (open files limit %d, %d for the S3 port, %d kept for the "
                    "stores)", cap, soft_limit, s3_cap, OTHER_FDS)
    return cap
