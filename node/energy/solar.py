"""A site's energy from a model: clear-sky photovoltaic output of its panels minus a constant load.

For demos and simulation, where no building system writes a signal. `pvlib` (the `solar` extra, imported
on the first read; without it the signal is unknown, with a log line saying so) gives the sun's position
and the clear-sky irradiance (Haurwitz's model: global horizontal irradiance from the zenith angle
alone, no turbidity data); the panels turn it into watts with a fixed performance ratio. Clear sky is
the best case: a real site's surplus is lower on cloudy days, which a file or HTTP source would say.
The forecast covers the next 24 hours, hourly, and is computed again every 10 minutes.
"""

from __future__ import annotations

import asyncio
import warnings

from maillage.node.energy.signal import Reading, Signal, SignalError
from maillage.placement.energy import SolarModel

__all__ = ["SolarSignal", "surplus_curve"]

PERFORMANCE_RATIO = 0.8   # inverter, temperature and wiring losses of a typical rooftop system
STC_IRRADIANCE = 1000.0   # W/m2 at which panels give their peak power
HORIZON_HOURS = 24
REFRESH = 600.0


def surplus_curve(model: SolarModel, times: list[float]) -> list[float]:
    """Surplus watts (clear-sky PV output minus the load) at each unix time of `times`."""
    import pandas as pd
    from pvlib.location import Location

    index = pd.DatetimeIndex(pd.to_datetime(times, unit="s", utc=True))
    with warnings.catch_warnings():  # pvlib's use of pandas APIs pandas deprecates: not the node's news
        warnings.simplefilter("ignore")
        ghi = Location(model.lat, model.lon).get_clearsky(index, model="haurwitz")["ghi"]
    return [model.peak_w * max(0.0, float(g)) / STC_IRRADIANCE * PERFORMANCE_RATIO - model.load_w for g in ghi]


class SolarSignal:
    kind = "solar"
    poll = 60.0

    def __init__(self, model: SolarModel) -> None:
        self.model = model
        self._computed: tuple[float, Signal] | None = None

    def _signal(self, now: float) -> Signal:
        times = [now + 3600.0 * h for h in range(HORIZON_HOURS + 1)]
        surplus = surplus_curve(self.model, times)
        readings = [Reading(t, s, self.model.carbon) for t, s in zip(times, surplus)]
        return Signal(readings[0], tuple(readings[1:]))

    async def read(self, now: float) -> Signal:
        if self._computed is None or now - self._computed[0] >= REFRESH:
            try:
                self._computed = (now, await asyncio.to_thread(self._signal, now))
            except ImportError as err:
                raise SignalError(f"the solar model needs pvlib (pip install 'maillage[solar]'): {err}") from None
        at, signal = self._computed
        if signal.now is not None and at != now:  # the reading of the last computation, dated now
            signal = Signal(Reading(now, signal.now.surplus_w, signal.now.carbon), signal.forecast)
        return signal
