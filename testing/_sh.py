"""Tiny helpers to run system tools (ip, nft, tc, mount) with readable errors.

Kept separate so every module reports a failed command the same way: the argv,
the exit code and stderr, which is what one needs to debug a CI box that lacks
a kernel feature.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence


class ToolError(RuntimeError):
    """A system tool (ip, nft, tc, mount...) failed or is missing."""


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True,
        timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run argv, capture output; raise ToolError with stderr when check and it fails."""
    if shutil.which(argv[0]) is None:
        raise ToolError(f"required tool {argv[0]!r} not found in PATH "
                        f"(install it, e.g. apt-get install iproute2 nftables)")
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise ToolError(f"{' '.join(argv)} failed ({proc.returncode}): "
                        f"{proc.stderr.strip() or proc.stdout.strip()}"
                        + (f"\ninput:\n{input}" if input else ""))
    return proc
