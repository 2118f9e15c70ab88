"""A site's energy signal read as hostile input (`maillage.node.energy.signal`), its sources, and the
clear-sky solar model."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.node.energy.signal import MAX_DOCUMENT, MAX_FORECAST, Order, SignalError, State, parse_signal
from maillage.node.energy.solar import SolarSignal, surplus_curve
from maillage.placement.energy import SolarModel

NOW = 1_800_000_000.0


def doc(**fields: object) -> bytes:
    return json.dumps({"time": NOW, **fields}).encode()


def test_a_reading_gives_its_state() -> None:
    assert parse_signal(doc(surplus_w=1200), NOW).state() is State.GREEN
    assert parse_signal(doc(surplus_w=-300, carbon_g_per_kwh=400), NOW).state() is State.GREY
    assert parse_signal(doc(surplus_w=-300, carbon_g_per_kwh=40), NOW).state() is State.GREEN
    assert parse_signal(doc(surplus_w=5000, order="shed"), NOW).state() is State.SHED
    assert parse_signal(doc(), NOW).state() is State.UNKNOWN  # says nothing: as before
    s = parse_signal(doc(surplus_w=-10, forecast=[{"time": NOW + 7200, "surplus_w": 900},
                                                  {"time": NOW + 3600, "surplus_w": -5}]), NOW)
    assert [r.time for r in s.forecast] == [NOW + 3600, NOW + 7200]
    assert s.next_green() == NOW + 7200
    assert s.now is not None and s.now.order is Order.NORMAL


@pytest.mark.parametrize("data, words", [
    (b"{", "not JSON"),
    (b"[]", "JSON object"),
    (doc(surplus_w="lots"), "surplus_w"),
    (doc(surplus_w=float("inf")).replace(b"Infinity", b"1e999"), "surplus_w"),
    (doc(carbon_g_per_kwh=-1), "carbon_g_per_kwh"),
    (doc(order="panic"), "order"),
    (json.dumps({"surplus_w": 3}).encode(), "time: missing"),
    (json.dumps({"time": NOW - 3600, "surplus_w": 3}).encode(), "stale"),
    (json.dumps({"time": NOW + 3600, "surplus_w": 3}).encode(), "future"),
    (doc(forecast=[{"time": NOW}] * (MAX_FORECAST + 1)), "forecast"),
    (doc(forecast=[{"surplus_w": 1}]), "forecast[0].time"),
    (b" " * (MAX_DOCUMENT + 1), "larger"),
])
def test_a_bad_document_is_refused_with_a_clear_reason(data: bytes, words: str) -> None:
    with pytest.raises(SignalError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_signal(data, NOW)


@given(st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["time", "surplus_w", "carbon_g_per_kwh", "order", "forecast"]), inner, max_size=5),
    max_leaves=12).map(lambda v: json.dumps(v).encode()))
def test_any_bytes_give_a_signal_or_a_signal_error(data: bytes) -> None:
    try:
        parse_signal(data, NOW)
    except SignalError:
        pass


def test_the_solar_model_follows_the_sun() -> None:
    """Toulouse, 6 kWp, 1.5 kW load: a surplus around solar noon in June, the load alone at night."""
    model = SolarModel(43.6, 1.44, 6000.0, 1500.0)
    june_noon = 1_781_870_400.0  # 2026-06-19 12:00 UTC
    noon, night = surplus_curve(model, [june_noon, june_noon + 12 * 3600])
    assert 2500 < noon < 6000 * 0.8 - 1500 + 1
    assert night == -1500.0
    december_noon = june_noon + 183 * 86400
    assert surplus_curve(model, [december_noon])[0] < noon


def test_the_solar_source_gives_a_day_of_forecast() -> None:
    source = SolarSignal(SolarModel(43.6, 1.44, 6000.0, 1500.0, carbon=55.0))
    signal = asyncio.run(source.read(1_781_870_400.0 - 6 * 3600))  # 06:00 UTC
    assert signal.now is not None and signal.now.carbon == 55.0
    assert len(signal.forecast) == 24
    assert signal.state(green_carbon=10.0) in (State.GREY, State.GREEN)
    assert signal.next_green(green_carbon=10.0) is not None


def test_an_http_source_is_bounded_and_says_what_went_wrong() -> None:
    """A building system's endpoint on loopback: a good answer is read; a large one, an error status,
    a redirect or a slow one is a SignalError (so the signal is unknown), within the timeout."""
    from aiohttp import web

    from maillage.node.energy.sources import HttpSignal

    async def main() -> None:
        async def ok(_: web.Request) -> web.Response:
            return web.json_response({"time": time.time(), "surplus_w": 42, "order": "shed"})

        async def big(_: web.Request) -> web.Response:
            return web.Response(body=b" " * (MAX_DOCUMENT * 4))

        async def slow(_: web.Request) -> web.Response:
            await asyncio.sleep(1.5)
            return web.Response(body=b"{}")

        async def moved(_: web.Request) -> web.Response:
            raise web.HTTPFound("/ok")

        async def broken(_: web.Request) -> web.Response:
            raise web.HTTPInternalServerError()

        app = web.Application()
        for path, handler in (("/ok", ok), ("/big", big), ("/slow", slow), ("/moved", moved), ("/broken", broken)):
            app.router.add_get(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            def source(path: str) -> HttpSignal:
                return HttpSignal(f"http://127.0.0.1:{port}{path}", timeout=0.5)
            signal = await source("/ok").read(time.time())
            assert signal.state() is State.SHED and signal.now is not None and signal.now.surplus_w == 42
            for path, words in (("/big", "larger|not JSON"), ("/slow", "Timeout"), ("/moved", "HTTP 302"),
                                ("/broken", "HTTP 500")):
                began = time.monotonic()
                with pytest.raises(SignalError, match=words):
                    await source(path).read(time.time())
                assert time.monotonic() - began < 2, path
        finally:
            await runner.cleanup()
    asyncio.run(main())


def test_without_pvlib_the_solar_source_is_unknown_and_says_what_to_install(monkeypatch) -> None:  # noqa: ANN001
    import sys

    monkeypatch.setitem(sys.modules, "pvlib.location", None)  # as on a node installed without the extra
    with pytest.raises(SignalError, match=r"maillage\[solar\]"):
        asyncio.run(SolarSignal(SolarModel(43.6, 1.44, 6000.0)).read(NOW))
