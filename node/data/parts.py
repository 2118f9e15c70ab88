"""Where the parts of an object completed from a multipart upload lie: its part table.

Completing an upload concatenates its parts' chunk lists, which no longer say where one part ends;
the completed version keeps its parts' numbers and lengths in the attribute `PARTS`, run-length
encoded ("1-99:8388608,100:1234": consecutive numbers of equal length as one run), so a read of
one part (S3's GetObject `partNumber`) and an SSE-C object's counters (`customer_keys.py`) find
their bytes. An object written whole has no table: one segment, number 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from maillage.node.errors import InvalidRequest

__all__ = ["PARTS", "Segment", "part_table", "segments"]

PARTS = "parts"


@dataclass(frozen=True)
class Segment:
    number: int     # 0 for an object written whole, else its part number
    start: int      # offset in the object
    length: int


def part_table(parts: Sequence[tuple[int, int]]) -> str:
    """(number, length) of a completed upload's parts, in order, run-length encoded."""
    runs: list[list[int]] = []
    for number, length in parts:
        if runs and runs[-1][1] == number - 1 and runs[-1][2] == length:
            runs[-1][1] = number
        else:
            runs.append([number, number, length])
    return ",".join(f"{a}:{n}" if a == b else f"{a}-{b}:{n}" for a, b, n in runs)


def _parts(table: str) -> Iterator[tuple[int, int]]:
    for run in table.split(","):
        numbers, _, length = run.partition(":")
        first, _, last = numbers.partition("-")
        for number in range(int(first), int(last or first) + 1):
            yield number, int(length)


def segments(attributes: Mapping[str, str], size: int) -> list[Segment]:
    """The segments of a version of `size` bytes: its parts', or one (number 0) without a table."""
    table = attributes.get(PARTS)
    if not table:
        return [Segment(0, 0, size)]
    try:
        found, start = [], 0
        for number, length in _parts(table):
            found.append(Segment(number, start, length))
            start += length
    except ValueError:
        raise InvalidRequest("this object's part table is damaged") from None
    if start != size:
        raise InvalidRequest(f"this object's part table adds up to {start} bytes, not its {size}")
    return found
