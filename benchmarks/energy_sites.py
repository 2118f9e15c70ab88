"""The sites of the energy benchmark (`maillage bench --energy`): where they are, their panels, load
and grid, and the readings each gives over a run, in the node's own types (`Reading`, `SolarModel`).

Photovoltaic output is the node's own clear-sky model (`node/energy/solar.surplus_curve`: pvlib's
Haurwitz irradiance at the site's sun position) when pvlib is installed (the `solar` extra). Without
it the same Haurwitz formula runs over a textbook sun position (Spencer's declination and equation of
time, no refraction): deterministic, a few W/m2 from pvlib's, so a run without the extra still gives
figures, said in its header. Clear sky is the best case; the load is the model's constant one.

Grid carbon follows each country's order of magnitude (France nuclear and hydro, Poland coal, Spain
and Italy solar at midday) with a daily swing, lowest at `low_hour` local solar time: a made-up but
plausible shape, so some grids turn green (<= 150 g/kWh) by day while others never do.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from maillage.node.energy.signal import Order, Reading
from maillage.placement.energy import SolarModel

__all__ = ["REGIONS", "Region", "Site", "make_sites", "pv_model_name", "readings", "clear_sky_surplus"]

DAY = 86400.0


@dataclass(frozen=True)
class Region:
    city: str
    location: str
    lat: float
    lon: float
    carbon: float          # mean grid carbon intensity, gCO2/kWh
    swing: float           # relative daily swing of it
    low_hour: float        # local solar hour when it is lowest


REGIONS = (
    Region("paris", "eu/fr/idf", 48.86, 2.35, 55.0, 0.2, 14.0),
    Region("toulouse", "eu/fr/occitanie", 43.60, 1.44, 55.0, 0.2, 14.0),
    Region("munich", "eu/de/bayern", 48.14, 11.58, 380.0, 0.2, 13.0),
    Region("berlin", "eu/de/berlin", 52.52, 13.40, 380.0, 0.2, 13.0),
    Region("warsaw", "eu/pl/mazowieckie", 52.23, 21.01, 650.0, 0.1, 13.0),
    Region("milan", "eu/it/lombardia", 45.46, 9.19, 300.0, 0.2, 13.0),
    Region("seville", "eu/es/andalucia", 37.39, -5.98, 165.0, 0.25, 14.0),
    Region("amsterdam", "eu/nl/noord-holland", 52.37, 4.90, 350.0, 0.15, 13.0),
)


@dataclass(frozen=True)
class Site:
    """One simulated site: its panels and load (`model`, the node's `solar:` source), its grid, the
    bytes it holds at the start and writes per day, and when its building orders a shed."""
    name: str
    region: Region
    model: SolarModel
    stored: float                 # bytes held at the start
    writes_per_day: float         # bytes written to it per day (foreground: not deferrable)
    shed: tuple[float, float]     # one demand-response order: (start, end) unix s

    def carbon(self, t: float) -> float:
        hour = (t % DAY) / 3600.0 + self.model.lon / 15.0  # local solar time
        swing = self.region.swing * math.cos(2 * math.pi * (hour - self.region.low_hour) / 24)
        return self.region.carbon * (1.0 - swing)


def make_sites(count: int, start: float, days: int, rng: random.Random) -> list[Site]:
    """`count` sites spread over the regions in turn, each placed, sized and loaded at random (seeded)."""
    sites = []
    for i in range(count):
        region = REGIONS[i % len(REGIONS)]
        lat = region.lat + rng.uniform(-0.6, 0.6)
        lon = region.lon + rng.uniform(-0.9, 0.9)
        peak = rng.choice((6e3, 9e3, 12e3, 18e3, 24e3))
        load = peak * rng.uniform(0.12, 0.3)
        shed_day = rng.randrange(1, max(2, days))
        shed_at = start + shed_day * DAY + (17.0 - lon / 15.0) * 3600.0  # 17:00 local: the evening peak
        sites.append(Site(f"{region.city}-{i // len(REGIONS) + 1}", region,
                          SolarModel(lat, lon, peak, load, region.carbon), stored=rng.uniform(0.8e12, 2.0e12),
                          writes_per_day=rng.uniform(20e9, 60e9), shed=(shed_at, shed_at + 2 * 3600.0)))
    return sites


def pv_model_name() -> str:
    """Which PV model a run uses: the node's (pvlib) or the fallback."""
    try:
        import pvlib  # noqa: F401
    except ImportError:
        return "Haurwitz clear sky over a textbook sun position (pvlib not installed)"
    return f"the node's clear-sky model (pvlib {pvlib.__version__}, Haurwitz)"


def _surplus(model: SolarModel, times: list[float]) -> list[float]:
    try:
        import pvlib  # noqa: F401

        from maillage.node.energy.solar import surplus_curve
    except ImportError:
        return clear_sky_surplus(model, times)
    return surplus_curve(model, times)


def clear_sky_surplus(model: SolarModel, times: list[float]) -> list[float]:
    """The fallback: surplus watts from Haurwitz's clear-sky GHI at a textbook sun position."""
    from maillage.node.energy.solar import PERFORMANCE_RATIO, STC_IRRADIANCE

    out = []
    lat = math.radians(model.lat)
    for t in times:
        utc_hour = (t % DAY) / 3600.0
        g = 2 * math.pi / 365.0 * (_day_of_year(t) - 1 + (utc_hour - 12) / 24)
        eqtime = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
                           - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g))
        decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
                + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
        solar_minutes = utc_hour * 60 + eqtime + 4 * model.lon
        hour_angle = math.radians(solar_minutes / 4 - 180)
        cos_z = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
        ghi = 1098.0 * cos_z * math.exp(-0.059 / cos_z) if cos_z > 0 else 0.0
        out.append(model.peak_w * ghi / STC_IRRADIANCE * PERFORMANCE_RATIO - model.load_w)
    return out


def _day_of_year(t: float) -> int:
    return datetime.fromtimestamp(t, UTC).timetuple().tm_yday


def readings(site: Site, times: list[float]) -> list[Reading]:
    """The site's reading at each time: PV surplus, grid carbon, and its shed order when it holds."""
    surplus = _surplus(site.model, times)
    lo, hi = site.shed
    return [Reading(t, s, site.carbon(t), Order.SHED if lo <= t < hi else Order.NORMAL)
            for t, s in zip(times, surplus)]
