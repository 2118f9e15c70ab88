"""Clock skew for one process, via Debian's libfaketime (package ``faketime``).

Why: scenario 7 (clock skew +-30 s on one node) needs a node whose wall clock
is off while the others are right, without touching the machine's clock.

How: ``LD_PRELOAD=libfaketime.so.1 FAKETIME=+30s`` in the process environment,
applied with ``env`` (which execs), *not* the ``faketime`` wrapper: that wrapper
forks and waits, so its pid is not the node's pid and a SIGKILL/SIGSTOP sent
to it would miss the node.

Checked on this machine (Python 3.11, libfaketime 0.9.10): ``time.time()`` and
``datetime.now()`` are shifted; ``time.sleep`` and asyncio work. Monotonic
clocks are shifted by the same constant offset, which is harmless. Do NOT set
``FAKETIME_DONT_FAKE_MONOTONIC=1``: with it ``time.sleep`` fails with EINVAL
here. Changing the skew of a running process through
``FAKETIME_TIMESTAMP_FILE`` also broke ``time.sleep`` (EINVAL), so the skew is
fixed at start: to change it, restart the process with another skew. The
preload does not reach statically linked programs (Python is dynamic).
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Sequence

__all__ = ["libfaketime_path", "faketime_available", "skew_env", "with_skew"]

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def libfaketime_path() -> str | None:
    """Path of libfaketime.so.1, or None when the ``faketime`` package is missing."""
    for p in _CANDIDATES:
        if os.path.exists(p):
            return p
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    return found[0] if found else None


def faketime_available() -> tuple[bool, str]:
    lib = libfaketime_path()
    if lib is None:
        return False, "libfaketime not found (apt-get install -y faketime)"
    if shutil.which("env") is None:
        return False, "env(1) not found"
    return True, lib


def _spec(seconds: float) -> str:
    return f"{seconds:+g}s"


def skew_env(seconds: float) -> dict[str, str]:
    """Environment variables that shift the wall clock of a process by ``seconds``."""
    lib = libfaketime_path()
    if lib is None:
        raise RuntimeError("clock skew needs libfaketime: apt-get install -y faketime")
    return {"LD_PRELOAD": lib, "FAKETIME": _spec(seconds), "FAKETIME_NO_CACHE": "1"}


def with_skew(argv: Sequence[str], seconds: float) -> list[str]:
    """argv wrapped so its wall clock is ``seconds`` ahead (negative: behind).

    ``env`` execs the command, so the resulting pid is the command's own pid.
    Compose as ``mesh.ns_argv(site, with_skew(argv, 30))``.
    """
    return ["env", *(f"{k}={v}" for k, v in skew_env(seconds).items()), *argv]
