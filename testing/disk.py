"""Disk faults: a small tmpfs that fills up, and on-disk corruption helpers.

Why: scenarios 10 and 11 need a node whose disk is full (ENOSPC on write) and
stored frames that are bit-flipped or truncated, to check that the node
refuses to acknowledge and that reads/scrub detect the damage.

``Tmpfs`` mounts ``tmpfs -o size=...`` on a fresh directory and unmounts it on
exit (lazily if still busy). Mount it *before* starting a node in a namespace:
the root mount here is ``private``, so ``ip netns exec`` (which makes its own
mount namespace) only sees mounts that existed when the process started.
"""

from __future__ import annotations

import atexit
import errno
import os
import tempfile
import weakref

from maillage.testing._sh import run

__all__ = ["Tmpfs", "flip_bit", "truncate", "overwrite", "fill"]

_live: weakref.WeakSet[Tmpfs] = weakref.WeakSet()


class Tmpfs:
    """A size-limited tmpfs mounted on a new temporary directory (root only)."""

    def __init__(self, size: str | int = "16m", path: str | None = None) -> None:
        self.size = str(size)
        self._made_dir = path is None
        self.path = path or tempfile.mkdtemp(prefix="ml-tmpfs-")
        os.makedirs(self.path, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", self.path])
        self.mounted = True
        _live.add(self)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def close(self) -> None:
        if self.mounted:
            if run(["umount", self.path], check=False).returncode != 0:
                run(["umount", "-l", self.path])  # busy: detach now, freed when unused
            self.mounted = False
            if self._made_dir:
                try:
                    os.rmdir(self.path)
                except OSError:
                    pass
        _live.discard(self)

    def __enter__(self) -> Tmpfs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flip_bit(path: str, offset: int, bit: int = 0) -> tuple[int, int]:
    """Flip one bit of the byte at ``offset`` (negative: from the end), in place.

    Returns (old byte, new byte). fsyncs so the damage is what a reader sees.
    """
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        pos = offset if offset >= 0 else size + offset
        if not 0 <= pos < size:
            raise ValueError(f"offset {offset} outside {path} ({size} bytes)")
        f.seek(pos)
        old = f.read(1)[0]
        new = old ^ (1 << (bit & 7))
        f.seek(pos)
        f.write(bytes([new]))
        f.flush()
        os.fsync(f.fileno())
    return old, new


def truncate(path: str, size: int | None = None, *, drop: int | None = None) -> int:
    """Truncate to ``size`` bytes, or drop the last ``drop`` bytes. Returns the new size."""
    cur = os.path.getsize(path)
    new = size if size is not None else max(0, cur - (drop or 0))
    os.truncate(path, new)
    return new


def overwrite(path: str, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` without changing the file's length beyond it."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fill(directory: str, leave_bytes: int = 0, name: str = ".ml-filler") -> str:
    """Fill the filesystem of ``directory`` until about ``leave_bytes`` remain
    (0: until ENOSPC). Returns the filler path; delete it to free the space."""
    path = os.path.join(directory, name)
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        while True:
            st = os.statvfs(directory)
            room = st.f_bavail * st.f_frsize - leave_bytes
            if room <= 0:
                break
            try:
                f.write(block[: min(len(block), room)])
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    return path


@atexit.register
def _unmount_all() -> None:
    for t in list(_live):
        try:
            t.close()
        except Exception:
            pass
