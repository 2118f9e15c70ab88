"""A site's energy signal: its local surplus, the grid's carbon intensity and a demand-response order,
now and over a forecast horizon; and the one JSON shape a building system writes it in.

The document comes from outside the mesh (a file or an endpoint an inverter or a building manager
writes), so it is read as hostile input: bounded in size and entries, every number finite and in
range, a reading too old or from the future refused. Whatever is wrong makes the signal *unknown*,
and an unknown signal means background work runs as it did before energy was known: a broken
source never stops a node's work, and never crashes it.

    {"time": 1767225600,              # unix seconds of the reading (a file without it: its mtime)
     "surplus_w": 1200,               # local production minus load, watts (may be negative)
     "carbon_g_per_kwh": 45,          # grid carbon intensity
     "order": "normal",               # demand response: "normal" or "shed"
     "forecast": [{"time": ..., "surplus_w": ..., "carbon_g_per_kwh": ...}, ...]}
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Order", "State", "Reading", "Signal", "SignalError", "parse_signal", "UNKNOWN", "MAX_DOCUMENT",
           "MAX_FORECAST", "GREEN_CARBON"]

MAX_DOCUMENT = 64 * 1024      # bytes of a signal document
MAX_FORECAST = 400            # forecast entries (a week of quarter hours is 672: hourly is plenty)
MAX_AGE = 900.0               # seconds a reading stays valid
MAX_AHEAD = 300.0             # seconds a reading's time may lead this node's clock
GREEN_CARBON = 150.0          # gCO2/kWh at or under which grid power counts as green
_WATTS = 1e9
_CARBON = 5000.0


class SignalError(ValueError):
    """A signal document that cannot be used (the signal is then unknown)."""


class Order(enum.Enum):
    NORMAL = "normal"
    SHED = "shed"


class State(enum.Enum):
    """What background work makes of the signal: unknown (as before), green, grey, or shed."""
    UNKNOWN = "unknown"
    GREEN = "green"
    GREY = "grey"
    SHED = "shed"


@dataclass(frozen=True)
class Reading:
    time: float
    surplus_w: float | None = None
    carbon: float | None = None
    order: Order = Order.NORMAL

    def state(self, green_carbon: float = GREEN_CARBON) -> State:
        if self.order is Order.SHED:
            return State.SHED
        if self.surplus_w is None and self.carbon is None:
            return State.UNKNOWN
        if (self.surplus_w is not None and self.surplus_w > 0) or (
                self.carbon is not None and self.carbon <= green_carbon):
            return State.GREEN
        return State.GREY


@dataclass(frozen=True)
class Signal:
    """The reading now (None: unknown) and the forecast after it, from one source."""
    now: Reading | None
    forecast: tuple[Reading, ...] = ()
    problem: str = ""   # why the signal is unknown, for the log and status

    def state(self, green_carbon: float = GREEN_CARBON) -> State:
        return State.UNKNOWN if self.now is None else self.now.state(green_carbon)

    def next_green(self, green_carbon: float = GREEN_CARBON) -> float | None:
        """Unix time of the first forecast reading that is green, if any."""
        return next((r.time for r in self.forecast if r.state(green_carbon) is State.GREEN), None)


UNKNOWN = Signal(None)


def _number(doc: dict[str, Any], key: str, bound: float, low: float | None = None) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SignalError(f"{key}: must be a finite number or null")
    if not (-bound if low is None else low) <= value <= bound:
        raise SignalError(f"{key}: {value} is out of range")
    return float(value)


def _reading(doc: object, default_time: float | None, where: str) -> Reading:
    if not isinstance(doc, dict):
        raise SignalError(f"{where}: must be a JSON object")
    try:
        when = _number(doc, "time", 1e11, 0.0)
        if when is None:
            if default_time is None:
                raise SignalError("time: missing")
            when = default_time
        order_text = doc.get("order", "normal")
        try:
            order = Order(order_text)
        except ValueError:
            raise SignalError(f"order: must be 'normal' or 'shed', got {str(order_text)[:40]!r}") from None
        return Reading(when, _number(doc, "surplus_w", _WATTS), _number(doc, "carbon_g_per_kwh", _CARBON, 0.0),
                       order)
    except SignalError as err:
        raise SignalError(f"{where}.{err}" if where else str(err)) from None


def parse_signal(data: bytes, now: float, *, default_time: float | None = None, max_age: float = MAX_AGE) -> Signal:
    """The signal a document gives at unix time `now`; `SignalError` if it is unusable or stale."""
    if len(data) > MAX_DOCUMENT:
        raise SignalError(f"document larger than {MAX_DOCUMENT} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise SignalError(f"not JSON: {str(err)[:80]}") from None
    reading = _reading(doc, default_time, "")
    if reading.time < now - max_age:
        raise SignalError(f"stale: the reading is {now - reading.time:.0f} s old (at most {max_age:.0f})")
    if reading.time > now + MAX_AHEAD:
        raise SignalError(f"the reading is {reading.time - now:.0f} s in the future")
    raw = doc.get("forecast", [])
    if not isinstance(raw, list) or len(raw) > MAX_FORECAST:
        raise SignalError(f"forecast: must be a list of at most {MAX_FORECAST} readings")
    forecast = tuple(sorted((_reading(r, None, f"forecast[{i}]") for i, r in enumerate(raw)), key=lambda r: r.time))
    return Signal(reading, tuple(r for r in forecast if r.time > reading.time))
