"""Keep the data path's large buffers in the node process instead of returning them to the kernel.

Every chunk a node handles passes through several buffers of about a chunk's size (the gRPC
message, the frame, the sealed file, a read's plaintext). glibc serves allocations above its mmap
threshold (128 KiB at first, raised dynamically) with a fresh mmap and gives them back on free, and
trims the heap's free top above 128 KiB: each 4 MiB buffer then costs ~1,000 page faults, which in
a virtual machine is 2-3 ms of CPU, ten times the copy itself (`benchmarks/profile_large.py`).
A fixed threshold above the largest buffer and a larger trim threshold make freed buffers serve
the next chunk. Memory stays bounded: the buffers alive at once are bounded by the node's chunks in
flight, and at most `TRIM_THRESHOLD` of free heap is kept before glibc trims it.

Called by the node (`server.run_node`) and by the `maillage` command for all its commands. The SDK
leaves its host process's allocator alone; an application moving large objects may call
`keep_large_buffers()` itself. Measured on a 3-site mesh, alternating with and without: a 4 MiB
copy 3.5 -> 0.3 ms; node CPU per 1 MiB GET 6.7 -> 5.0-5.3 ms; PUTs within the run-to-run noise;
a client's CPU per 64 MiB GET 138 -> 111 ms; peak node RSS unchanged (460-510 MB at 64 MiB c8).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_large_buffers"]

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Allocations below this come from the heap and are reused (above a frame of the largest chunk,
#: within glibc's limit of 32 MiB on 64-bit).
MMAP_THRESHOLD = 16 << 20
#: Free heap kept before it is returned to the kernel.
TRIM_THRESHOLD = 256 << 20


def keep_large_buffers() -> bool:
    """Apply the two thresholds when the C library is glibc; True if it took them. Elsewhere (musl,
    macOS) nothing changes: their allocators have no such knobs and the node works as before."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    taken = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not taken:
        log.info("the C library refused the malloc thresholds; large buffers go back to the kernel on free")
    return taken
