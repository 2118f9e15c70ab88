"""Where a site's energy signal comes from, as the layout declares it (``energy = "..."`` on a site).

The layout only names the source; the node reads it (`maillage.node.energy`). Three kinds:

- ``file:/abs/path.json``: a JSON file the building's energy manager or inverter rewrites;
- ``http://host/path`` or ``https://...``: the same JSON served by that system;
- ``solar:lat=43.6,lon=1.44,peak_w=6000[,load_w=2500][,carbon=55]``: a clear-sky photovoltaic model
  of the site's panels minus a constant load, for demos and simulation.

A site may also declare its servers' power figures (``power = "idle_w=35,read_nj=1.5,..."``): what
the node's estimate of each kind of background work's energy counts (`PowerFigures`); without
them, published orders of magnitude for a small server.

Kept as text in the signed layout (so an old node that does not know the field refuses the layout,
and a layout without it formats byte for byte as before); parsed and bounded here, purely.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from maillage.placement.errors import LayoutError

__all__ = ["FileSource", "HttpSource", "SolarModel", "EnergySource", "parse_energy_source", "MAX_SPEC",
           "PowerFigures", "parse_power"]

MAX_SPEC = 512
_PRINTABLE = re.compile(r"[\x21-\x7e]+\Z")  # no spaces, no control characters
_SOLAR_KEYS = {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0), "peak_w": (0.0, 1e9), "load_w": (0.0, 1e9),
               "carbon": (0.0, 5000.0)}


@dataclass(frozen=True)
class FileSource:
    path: str


@dataclass(frozen=True)
class HttpSource:
    url: str


@dataclass(frozen=True)
class SolarModel:
    """Clear-sky PV output of ``peak_w`` watts-peak panels at (lat, lon), minus ``load_w``; a fixed
    grid carbon intensity (gCO2/kWh) when ``carbon`` is given."""

    lat: float
    lon: float
    peak_w: float
    load_w: float = 0.0
    carbon: float | None = None


EnergySource = FileSource | HttpSource | SolarModel


def parse_energy_source(text: object) -> EnergySource:
    """The source a layout's ``energy`` text names; `LayoutError` ("energy: ...") if it names none."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_SPEC or not _PRINTABLE.match(text):
        raise LayoutError(f"energy: must be printable text of 1..{MAX_SPEC} characters without spaces, "
                          f"got {text!r}"[:600])
    kind, _, rest = text.partition(":")
    if kind == "file":
        if not rest.startswith("/"):
            raise LayoutError(f"energy: {text!r}: a file source needs an absolute path ('file:/var/lib/x.json')")
        return FileSource(rest)
    if kind in ("http", "https"):
        if not rest.startswith("//") or len(rest) < 3:
            raise LayoutError(f"energy: {text!r}: an HTTP source needs a URL ('https://bms.local/energy')")
        return HttpSource(text)
    if kind == "solar":
        return _solar(text, rest)
    raise LayoutError(f"energy: {text!r} must start with 'file:', 'http://', 'https://' or 'solar:'")


def _solar(text: str, rest: str) -> SolarModel:
    values = _numbers("energy", text, rest, _SOLAR_KEYS)
    for key in ("lat", "lon", "peak_w"):
        if key not in values:
            raise LayoutError(f"energy: {text!r}: {key} missing")
    return SolarModel(values["lat"], values["lon"], values["peak_w"], values.get("load_w", 0.0),
                      values.get("carbon"))


def _numbers(field: str, text: str, rest: str, keys: dict[str, tuple[float, float]]) -> dict[str, float]:
    """``key=value,...`` of `keys`, each a finite number in its bounds, none twice."""
    values: dict[str, float] = {}
    for part in rest.split(","):
        key, eq, raw = part.partition("=")
        if not eq or key not in keys:
            raise LayoutError(f"{field}: {text!r}: expected key=value pairs of {', '.join(keys)}")
        if key in values:
            raise LayoutError(f"{field}: {text!r}: {key} given twice")
        try:
            value = float(raw)
        except ValueError:
            raise LayoutError(f"{field}: {text!r}: {key} must be a number") from None
        low, high = keys[key]
        if not math.isfinite(value) or not low <= value <= high:
            raise LayoutError(f"{field}: {text!r}: {key} must be in {low:g}..{high:g}")
        values[key] = value
    return values


@dataclass(frozen=True)
class PowerFigures:
    """A site's servers as the energy estimate counts them: idle watts, and nanojoules per byte read
    from disk, written to disk, and sent or received over the network. The defaults are published
    orders of magnitude for a small server (an SSD ~2 nJ/B read, ~5 written; a byte through a NIC
    and a switch ~20), not a measurement."""

    idle_w: float = 40.0
    read_nj: float = 2.0
    write_nj: float = 5.0
    transfer_nj: float = 20.0


_POWER_KEYS = {"idle_w": (0.0, 1e6), "read_nj": (0.0, 1e6), "write_nj": (0.0, 1e6), "transfer_nj": (0.0, 1e6)}


def parse_power(text: object) -> PowerFigures:
    """The figures a layout's ``power`` text gives (``idle_w=35,read_nj=1.5``: any subset of
    idle_w, read_nj, write_nj, transfer_nj; the others keep their defaults); `LayoutError`
    ("power: ...") otherwise."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_SPEC or not _PRINTABLE.match(text):
        raise LayoutError(f"power: must be printable text of 1..{MAX_SPEC} characters without spaces, "
                          f"got {text!r}"[:600])
    return PowerFigures(**_numbers("power", text, text, _POWER_KEYS))
