"""The node keeps its large buffers (node/allocator.py) where the C library lets it."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from maillage.node.runtime.allocator import ARENA_MAX, keep_large_buffers

GLIBC = platform.libc_ver()[0] == "glibc"

# Eight threads alive at once each allocate a buffer above pymalloc's limit (so from malloc);
# glibc then gives each its own arena unless the number is bounded. malloc_stats prints one
# "Arena N:" block per arena on stderr.
_COUNT_ARENAS = textwrap.dedent("""
    import ctypes, ctypes.util, sys, threading
    from maillage.node.runtime.allocator import keep_large_buffers
    if sys.argv[1] == "bounded":
        keep_large_buffers()
    together = threading.Barrier(8)
    def allocate():
        together.wait()
        buffer = bytearray(300 << 10)
        together.wait()
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
""")


def arenas_used(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _COUNT_ARENAS, mode], capture_output=True, text=True,
                          timeout=60, check=True)
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def test_glibc_takes_the_thresholds_and_other_libraries_are_left_alone() -> None:
    assert keep_large_buffers() == GLIBC


@pytest.mark.skipif(not GLIBC, reason="malloc arenas and malloc_stats are glibc's")
def test_threads_share_a_bounded_number_of_arenas() -> None:
    assert arenas_used("default") > ARENA_MAX  # the bound is not glibc's default: this could fail
    assert 1 <= arenas_used("bounded") <= ARENA_MAX
