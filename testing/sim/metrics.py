"""What a simulation counts: per node messages, bytes and handler time; per simulated second the
mesh's totals; and a digest of every delivery, so two runs of one seed can be compared exactly.

Handler time is real CPU time (`time.perf_counter`) spent running the target's code for a call; it
is the only figure that differs between two runs of one seed, and is kept out of the digest.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["Metrics", "Counts", "fan_out"]

# The set of nodes an operation contacts, while one is being measured (see `fan_out`).
_contacted: ContextVar[set[str] | None] = ContextVar("sim_contacted", default=None)


@dataclass
class Counts:
    """One node's totals."""
    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    handler_seconds: float = 0.0

    def copy(self) -> Counts:
        return Counts(self.sent, self.received, self.bytes_sent, self.bytes_received, self.handler_seconds)


@dataclass
class Metrics:
    nodes: defaultdict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    methods: Counter[str] = field(default_factory=Counter)           # calls by method name
    method_bytes: Counter[str] = field(default_factory=Counter)
    per_second: Counter[int] = field(default_factory=Counter)        # messages in each simulated second
    outcomes: Counter[str] = field(default_factory=Counter)          # ok, lost, cut, down, error
    _digest: hashlib.blake2b = field(default_factory=lambda: hashlib.blake2b(digest_size=16))

    def message(self, at: float, source: str, target: str, method: str, size: int) -> None:
        """A message (call or answer) from `source` to `target`."""
        s, t = self.nodes[source], self.nodes[target]
        s.sent += 1
        s.bytes_sent += size
        t.received += 1
        t.bytes_received += size
        self.method_bytes[method] += size
        self.per_second[int(at)] += 1

    def call(self, at: float, source: str, target: str, method: str, outcome: str, size: int) -> None:
        """A finished call, for the trace digest and the counts by method and outcome."""
        self.methods[method] += 1
        self.outcomes[outcome] += 1
        self._digest.update(f"{at:.6f} {source} {target} {method} {outcome} {size}\n".encode())
        contacted = _contacted.get()
        if contacted is not None:
            contacted.add(target)

    def note(self, text: str) -> None:
        """Put an event of the scenario (a crash, a layout push) into the trace."""
        self._digest.update(f"# {text}\n".encode())

    def handler(self, node_id: str, seconds: float) -> None:
        self.nodes[node_id].handler_seconds += seconds

    def digest(self) -> str:
        return self._digest.hexdigest()

    def snapshot(self) -> dict[str, Counts]:
        return {n: c.copy() for n, c in self.nodes.items()}


class fan_out:  # noqa: N801 - used like a function: `with fan_out() as contacted:`
    """Collect the nodes contacted by the calls made (and the tasks started) inside the block."""

    def __enter__(self) -> set[str]:
        self.contacted: set[str] = set()
        self._token = _contacted.set(self.contacted)
        return self.contacted

    def __exit__(self, *exc: object) -> None:
        _contacted.reset(self._token)
