"""Keep the data path's large buffers in the node process instead of returning them to the kernel.

Every chunk a node handles passes through several buffers of about a chunk's size (the gRPC
message, the frame, the sealed file, a read's plaintext). glibc serves allocations above its mmap
threshold (128 KiB at first, raised dynamically) with a fresh mmap and gives them back on free, and
trims the heap's free top above 128 KiB: each 4 MiB buffer then costs ~1,000 page faults, which in
a virtual machine is 2-3 ms of CPU, ten times the copy itself (`benchmarks/profile_large.py`).
A fixed threshold above the largest buffer and a larger trim threshold make freed buffers serve
the next chunk. Memory stays bounded: the buffers alive at once are bounded by the node's chunks in
flight, and each arena keeps at most `TRIM_THRESHOLD` of free heap before glibc trims it.

glibc gives the threads alive at once arenas of their own (up to 8 per core), and free memory in
one arena cannot serve another: with chunks framed, sealed and sent by different executor and gRPC
threads, each arena kept a few chunks' worth. `ARENA_MAX` arenas bound that. The
GIL serializes most of the node's allocations anyway, so fewer arenas cost no measurable speed
(3-site mesh, 1 MiB and 64 MiB at c1/c8, two rounds: ops/s within the run-to-run noise) and cut
the peak: node RSS at 64 MiB c8 446-497 -> 354-386 MB, a coordinator streaming a 384 MiB object
112-136 -> 86-98 MiB above its start (`tests/cluster/test_streaming.py`, whose 160 MiB bound the
per-thread arenas had pushed a CI run past).

Called by the node (`server.run_node`) and by the `maillage` command for all its commands. The SDK
leaves its host process's allocator alone; an application moving large objects may call
`keep_large_buffers()` itself. Measured on a 3-site mesh, alternating with and without: a 4 MiB
copy 3.5 -> 0.3 ms; node CPU per 1 MiB GET 6.7 -> 5.0-5.3 ms; PUTs within the run-to-run noise;
a client's CPU per 64 MiB GET 138 -> 111 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_large_buffers", "return_free_memory"]

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: Allocations below this come from the heap and are reused (above a frame of the largest chunk,
#: within glibc's limit of 32 MiB on 64-bit).
MMAP_THRESHOLD = 16 << 20
#: Free heap kept before it is returned to the kernel.
TRIM_THRESHOLD = 256 << 20
#: Arenas shared by all threads (one was as fast on 2 cores; two leave room on larger hosts).
ARENA_MAX = 2


def keep_large_buffers() -> bool:
    """Apply the thresholds and the arena bound when the C library is glibc; True if it took them.
    Elsewhere (musl, macOS) nothing changes: their allocators have no such knobs and the node works
    as before."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((_M_ARENA_MAX, ARENA_MAX), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    taken = all([bool(mallopt(option, value)) for option, value in settings])
    if not taken:
        log.info("the C library refused the malloc settings; large buffers go back to the kernel on free")
    return taken


def return_free_memory() -> bool:
    """Give the C heap's free pages back to the kernel now (glibc's malloc_trim); True if it could.
    For the end of a burst that left free memory scattered below the heap's top, where the trim
    threshold above never reaches (the S3 door calls it when a flood of connections drains)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return bool(trim(0))
