"""The node keeps its large buffers (node/allocator.py) where the C library lets it."""

from __future__ import annotations

import platform

from maillage.node.allocator import keep_large_buffers


def test_glibc_takes_the_thresholds_and_other_libraries_are_left_alone() -> None:
    assert keep_large_buffers() == (platform.libc_ver()[0] == "glibc")
