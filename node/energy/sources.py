"""Where a node reads its site's energy signal: the source its site declares in the layout.

Each source has `read(now) -> Signal` (raising `SignalError` or `OSError` when it cannot say; the
scheduler then treats the signal as unknown) and `poll`, the seconds between two reads. A file is
looked at every second (a `stat`; read again only when it changed), so a "shed" order written there
is obeyed within seconds; an HTTP endpoint is asked every 15 s with a bounded answer and a timeout;
the solar model is computed (`solar.py`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

from maillage.node.energy.signal import MAX_DOCUMENT, Signal, SignalError, parse_signal
from maillage.placement.energy import EnergySource, FileSource, HttpSource, SolarModel

__all__ = ["SignalSource", "FileSignal", "HttpSignal", "source_for"]

HTTP_TIMEOUT = 5.0


class SignalSource(Protocol):
    kind: str
    poll: float

    async def read(self, now: float) -> Signal: ...


class FileSignal:
    kind = "file"

    def __init__(self, path: str, *, poll: float = 1.0) -> None:
        self.path = path
        self.poll = poll
        self._seen: tuple[int, int, int] | None = None
        self._data = b""
        self._mtime = 0.0

    def _load(self) -> None:
        st = os.stat(self.path)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return
        if st.st_size > MAX_DOCUMENT:
            raise SignalError(f"{self.path}: larger than {MAX_DOCUMENT} bytes")
        with open(self.path, "rb") as f:
            data = f.read(MAX_DOCUMENT + 1)
        self._seen, self._data, self._mtime = key, data, st.st_mtime

    async def read(self, now: float) -> Signal:
        await asyncio.to_thread(self._load)
        return parse_signal(self._data, now, default_time=self._mtime)


class HttpSignal:
    kind = "http"

    def __init__(self, url: str, *, poll: float = 15.0, timeout: float = HTTP_TIMEOUT) -> None:
        self.url = url
        self.poll = poll
        self._timeout = timeout

    async def read(self, now: float) -> Signal:
        import aiohttp  # only a node whose site declares an HTTP source needs the client

        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.get(self.url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise SignalError(f"{self.url}: HTTP {resp.status}")
                data = await resp.content.read(MAX_DOCUMENT + 1)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SignalError(f"{self.url}: {type(err).__name__} {str(err)[:80]}") from None
        return parse_signal(data, now)


def source_for(spec: EnergySource) -> SignalSource:
    if isinstance(spec, FileSource):
        return FileSignal(spec.path)
    if isinstance(spec, HttpSource):
        return HttpSignal(spec.url)
    if isinstance(spec, SolarModel):
        from maillage.node.energy.solar import SolarSignal  # pvlib, imported only for a solar site

        return SolarSignal(spec)
    raise TypeError(f"no source for {spec!r}")
