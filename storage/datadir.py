"""The data directory's format marker: a node refuses a directory a newer maillage wrote.

The parts of a data directory carry their own formats (the metadata database's ``\\x00format``,
each manifest's and frame's version byte), each refused when newer than this code reads. Those are
checked as each part is read, though, which can be after the node has opened, or even changed,
other parts. The marker covers the directory as a whole and is checked before anything in it is
opened: a node of an older release started on a directory a newer one has upgraded (a rollback
during an upgrade) exits with one line naming both formats, instead of misreading or rewriting it.

The marker is one line of text in ``FORMAT`` (``maillage data format 1``), written at the first
start (atomically: a temp file, fsync, rename). A directory without it and with data (made before
the marker existed) is format 1. A release that changes the directory in a way older ones would
misread raises ``DATA_FORMAT`` and writes the new number once its own upgrade is done.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from maillage.storage.errors import StorageError

__all__ = ["DATA_FORMAT", "FORMAT_FILE", "DataFormatError", "check_data_format", "read_data_format"]

DATA_FORMAT = 1
_UNMARKED = 1  # the format of a directory made before the marker existed
FORMAT_FILE = "FORMAT"
_LINE = re.compile(rb"maillage data format (\d{1,9})\n?")
_MAX_BYTES = 64


class DataFormatError(StorageError):
    """The data directory is of a format this node does not read (newer, or an unreadable marker)."""

    __module__ = "maillage.storage"


def read_data_format(data_dir: Path) -> int | None:
    """The format the marker of `data_dir` names; None when there is no marker."""
    path = data_dir / FORMAT_FILE
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DataFormatError(f"cannot read the data format marker {path}: {exc.strerror}") from exc
    match = _LINE.fullmatch(raw) if len(raw) <= _MAX_BYTES else None
    if match is None:
        raise DataFormatError(f"{path} is not a maillage data format marker ({raw[:40]!r}): "
                              "is this a maillage data directory?")
    return int(match.group(1))


def check_data_format(data_dir: Path, *, create: bool = True) -> int:
    """The format of `data_dir`, checked before anything in it is opened: `DataFormatError` if it
    is newer than `DATA_FORMAT`. With `create`, the directory and its marker are made when missing
    (the first start; a directory with data and no marker is format 1, marked as such)."""
    found = read_data_format(data_dir)
    if found is not None and found > DATA_FORMAT:
        raise DataFormatError(
            f"data directory {data_dir} has data format {found}, newer than format {DATA_FORMAT}, the newest "
            f"this maillage reads: it was written by a newer release; run that release (or a later one) "
            f"on it, never an older one (see deploy/README.md, upgrades)")
    if found is None:
        found = _UNMARKED if data_dir.is_dir() and any(data_dir.iterdir()) else DATA_FORMAT
        if create:
            _write_marker(data_dir, found)
    return found


def _write_marker(data_dir: Path, fmt: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / FORMAT_FILE
    tmp = data_dir / f".{FORMAT_FILE}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(b"maillage data format %d\n" % fmt)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DataFormatError(f"cannot write the data format marker {path}: {exc.strerror}") from exc
