"""`maillage console` in process: the web app over a synthetic fleet, through a real HTTP client.

What an unauthenticated or wrongly authenticated caller gets (nothing), sessions (cookie attributes,
expiry, a key the mesh stops taking), bounds on what a request may carry, cross-origin posts, the
views the page renders, and an observer that never makes a page wait for a slow mesh.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from maillage.cli.common import CommandError
from maillage.cli.console import tls
from maillage.cli.console.app import KEEPALIVE, ConsoleConfig, build_app
from maillage.cli.console.fleet import (
    EventLog,
    NodeObs,
    Observation,
    SiteInfo,
    Unavailable,
    fleet_view,
    place,
    policy_view,
)
from maillage.cli.console.sessions import LoginLimiter, Sessions
from maillage.cli.console.synthetic import SyntheticSource
from maillage.cli.main import build_parser

KEY_ID, SECRET = "MKADMIN0001", "s3cr3t-admin-secret"
HOSTILE = '<script>window.__owned=1</script>'
DATA_ROUTES = ("/api/fleet", "/api/site?name=fr-site-0000", "/api/policies", "/api/buckets")
FAST = ConsoleConfig(period=0.05, login_deadline=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def source(sites: int = 50) -> SyntheticSource:
    return SyntheticSource(sites, key_id=KEY_ID, secret=SECRET, extra_site_names=(HOSTILE,))


def run(scenario: Callable[[TestClient], Awaitable[None]], src=None, config: ConsoleConfig = FAST,
        clock: Callable[[], float] | None = None) -> None:
    async def main() -> None:
        app = build_app(src if src is not None else source(), config, **({"clock": clock} if clock else {}))
        async with TestClient(TestServer(app, keepalive_timeout=KEEPALIVE)) as client:
            await scenario(client)
    asyncio.run(main())


async def login(client: TestClient, key_id: str = KEY_ID, secret: str = SECRET, **headers: str):
    return await client.post("/login", data={"key_id": key_id, "secret": secret}, allow_redirects=False,
                             headers=headers)


def cookie_of(response) -> dict[str, str]:
    morsel = next(iter(response.cookies.values()))
    return {"Cookie": f"{morsel.key}={morsel.value}"}


async def eventually_json(client: TestClient, path: str, headers, check, timeout: float = 5.0):
    """GET path until check(json) holds (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = await client.get(path, headers=headers)
        body = await r.json()
        if r.status == 200 and check(body):
            return body
        if loop.time() > deadline:
            raise AssertionError(f"{path}: condition not met in {timeout} s; last {r.status} {str(body)[:200]}")
        await asyncio.sleep(0.02)


def test_without_a_session_every_data_route_answers_401_with_nothing_in_it():
    async def scenario(client: TestClient) -> None:
        for headers in ({}, {"Cookie": "__Host-maillage-console=forged-token"}):
            for path in DATA_ROUTES:
                r = await client.get(path, headers=headers)
                body = await r.text()
                assert r.status == 401, path
                assert json.loads(body) == {"error": "login required"}
            r = await client.get("/", headers=headers, allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/login"
    run(scenario)


def test_wrong_credentials_get_nothing_and_no_cookie():
    async def scenario(client: TestClient) -> None:
        for key_id, secret in ((KEY_ID, "wrong"), ("MKNOBODY", SECRET), ("", ""), (KEY_ID, "")):
            r = await login(client, key_id, secret)
            body = await r.text()
            assert r.status in (400, 401), (key_id, r.status)
            assert not r.cookies and "Set-Cookie" not in r.headers
            assert "fr-site-0000" not in body and "tenant-" not in body
        r = await client.get("/api/fleet")
        assert r.status == 401
    run(scenario)


def test_login_sets_a_strict_session_cookie_and_opens_the_data():
    async def scenario(client: TestClient) -> None:
        r = await login(client)
        assert r.status == 303 and r.headers["Location"] == "/"
        raw = r.headers["Set-Cookie"]
        assert raw.startswith("__Host-maillage-console=")
        for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age="):
            assert attribute.lower() in raw.lower(), raw
        assert len(next(iter(r.cookies.values())).value) >= 40       # 32 random bytes, url-safe
        headers = cookie_of(r)
        fleet = await eventually_json(client, "/api/fleet", headers, lambda b: b.get("generation", 0) > 0)
        assert fleet["counts"]["sites"] == 50 and len(fleet["sites"]) == 50
        page = await client.get("/", headers=headers)
        assert page.status == 200 and "console.js" in await page.text()
        policies = await (await client.get("/api/policies", headers=headers)).json()
        assert {p["name"] for p in policies["policies"]} == {"eu-wide", "france-only", "germany-only"}
        buckets = await (await client.get("/api/buckets", headers=headers)).json()
        assert sum(len(t["buckets"]) for t in buckets["tenants"]) == 40
        assert set(buckets["tenants"][0]["buckets"][0]) == {"name", "policy"}     # names, never keys
        out = await client.post("/logout", headers=headers, allow_redirects=False)
        assert out.status == 303
        assert (await client.get("/api/fleet", headers=headers)).status == 401
    run(scenario)


def test_sessions_expire_when_idle_and_after_their_lifetime():
    clock = Clock()

    async def scenario(client: TestClient) -> None:
        headers = cookie_of(await login(client))
        assert (await client.get("/api/policies", headers=headers)).status == 200
        clock.now += 50                        # used within the idle time: still alive
        assert (await client.get("/api/policies", headers=headers)).status == 200
        clock.now += 61
        assert (await client.get("/api/policies", headers=headers)).status == 401
        headers = cookie_of(await login(client))
        for _ in range(4):                      # kept busy, it still ends at its lifetime
            clock.now += 50
            assert (await client.get("/api/policies", headers=headers)).status == 200
        clock.now += 50
        assert (await client.get("/api/policies", headers=headers)).status == 401
    config = ConsoleConfig(period=0.05, session_idle=60, session_lifetime=220)
    run(scenario, config=config, clock=clock)


def test_a_key_the_mesh_stops_taking_ends_its_sessions():
    src = source()

    async def scenario(client: TestClient) -> None:
        headers = cookie_of(await login(client))
        await eventually_json(client, "/api/fleet", headers, lambda b: b.get("generation", 0) > 0)
        src.key = (KEY_ID, "rotated")          # revoked: the next observation is refused
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while (await client.get("/api/policies", headers=headers)).status != 401:
            assert loop.time() < deadline, "the session outlived its key"
            await asyncio.sleep(0.02)
    run(scenario, src)


def test_request_sizes_are_bounded():
    async def scenario(client: TestClient) -> None:
        r = await client.post("/login", data={"key_id": KEY_ID, "secret": "x" * 100_000}, allow_redirects=False)
        assert r.status == 413
        r = await login(client, "K" * 129, SECRET)
        assert r.status == 400
        r = await login(client, KEY_ID, "s" * 257)
        assert r.status == 400
        headers = cookie_of(await login(client))
        r = await client.get("/api/site?name=" + "a" * 300, headers=headers)
        assert r.status == 400
        r = await client.get("/api/site?name=nowhere", headers=headers)
        assert r.status == 404
        r = await client.get("/static/../../etc/passwd")
        assert r.status == 404
        r = await client.get("/api/fleet?pad=" + "a" * 9000, headers=headers)     # request line > 8 KiB
        assert r.status == 400
        r = await client.get("/api/fleet", headers={**headers, "X-Big": "b" * 9000})
        assert r.status == 400
    run(scenario)


def test_cross_origin_posts_are_refused_and_failed_logins_are_limited():
    async def scenario(client: TestClient) -> None:
        r = await login(client, Origin="https://evil.example")
        assert r.status == 403 and not r.cookies
        r = await client.post("/logout", headers={"Origin": "https://evil.example"}, allow_redirects=False)
        assert r.status == 403
        for _ in range(10):
            assert (await login(client, KEY_ID, "guess")).status == 401
        r = await login(client)                 # even the right key, from that address, for a while
        assert r.status == 429 and not r.cookies
    run(scenario)


def test_pages_carry_no_data_and_a_strict_content_security_policy():
    async def scenario(client: TestClient) -> None:
        headers = cookie_of(await login(client))
        fleet = await eventually_json(client, "/api/fleet", headers, lambda b: b.get("generation", 0) > 0)
        assert HOSTILE in [s["name"] for s in fleet["sites"]]   # the JSON carries the name as data...
        for path in ("/", "/login", "/static/console.js"):
            r = await client.get(path, headers=headers)
            body = await r.text()
            assert "<script>window" not in body and "fr-site-0000" not in body   # ...pages carry none
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        r = await client.get("/api/fleet", headers=headers)
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.headers["Cache-Control"] == "no-store"
    run(scenario)


def test_a_stalled_mesh_never_makes_a_page_wait():
    release = threading.Event()

    class Stalled(SyntheticSource):
        def observe(self, key_id: str, secret: str) -> Observation:
            release.wait(30)                   # a node that never answers, as far as this look goes
            raise Unavailable("no endpoint answered")

    async def scenario(client: TestClient) -> None:
        headers = cookie_of(await login(client))
        loop = asyncio.get_running_loop()
        began = loop.time()
        body = await (await client.get("/api/fleet", headers=headers)).json()
        assert body["pending"] is True and loop.time() - began < 1.0
        release.set()
    run(scenario, Stalled(5, key_id=KEY_ID, secret=SECRET))


def test_a_node_going_down_is_an_event_of_its_site():
    src = source(20)
    node = next(iter(src.nodes))
    site = src.nodes[node].site
    src.set_state(node, reachable=True, seen_as="up")

    async def scenario(client: TestClient) -> None:
        headers = cookie_of(await login(client))
        await eventually_json(client, "/api/fleet", headers, lambda b: b.get("generation", 0) > 0)
        src.set_state(node, reachable=False, seen_as="down")
        detail = await eventually_json(client, f"/api/site?name={site}", headers, lambda b: b["events"])
        assert detail["events"][0] | {"t": 0} == {"t": 0, "site": site, "node": node, "was": "up", "now": "down"}
        assert detail["state"] == "down"
        assert next(n for n in detail["nodes"] if n["id"] == node)["state"] == "down"
    run(scenario, src)


# ----- the views, pure --------------------------------------------------------------------------

def test_the_fleet_view_of_1000_sites_counts_every_site_and_node_once():
    src = SyntheticSource(1000, key_id=KEY_ID, secret=SECRET, seed=7)
    obs = src.observe(KEY_ID, SECRET)
    view = fleet_view(obs, 1, EventLog())
    assert view["counts"]["sites"] == 1000 == len(view["sites"])
    assert sum(view["counts"]["site_states"].values()) == 1000
    assert sum(view["counts"]["node_states"].values()) == len(obs.nodes) == sum(s["nodes"] for s in view["sites"])
    assert view["sites"] == sorted(view["sites"], key=lambda r: (r["country"], r["region"], r["name"]))
    assert view["counts"]["site_states"]["down"] >= 1      # the seed has failures to show


def test_node_states_and_policy_verdicts():
    def node(i: str, site: str, **kw) -> NodeObs:
        return NodeObs(id=i, site=site, address="h:1", capacity=1, **kw)

    assert node("a", "s").state == "up"
    assert node("a", "s", reachable=False).state == "unreachable"
    assert node("a", "s", reachable=False, seen_as="down").state == "down"
    assert node("a", "s", seen_as="suspect").state == "suspect"
    assert place(("eu", "fr", "idf")) == ("eu/fr", "eu/fr/idf") and place(("eu",)) == ("eu", "eu")
    from maillage.cli.console.fleet import PolicyInfo
    obs = Observation(1, (SiteInfo("p", ("eu", "fr", "idf")), SiteInfo("t", ("eu", "fr", "occ")),
                          SiteInfo("m", ("eu", "de", "by"))),
                      (node("p1", "p"), node("t1", "t", reachable=False, seen_as="down"), node("m1", "m")),
                      (PolicyInfo("fr", (("eu", "fr"),), 2), PolicyInfo("eu", (("eu",),), 2),
                       PolicyInfo("de", (("eu", "de"),), 2)), None)
    verdicts = {p["name"]: p["verdict"] for p in policy_view(obs)}
    assert verdicts == {"fr": "degraded", "eu": "ok", "de": "unsatisfiable"}


def test_sessions_and_limiter_alone():
    clock = Clock()
    sessions = Sessions(lifetime=100, idle=10, limit=2, clock=clock)
    a, b, c = (sessions.create("k", "s") for _ in range(3))
    assert sessions.get(a) is None and sessions.get(b) and sessions.get(c)    # the oldest went first
    assert sessions.get("x" * 200) is None and sessions.get(None) is None
    assert sessions.drop_key("k", "s") == 2 and sessions.latest() is None
    limiter = LoginLimiter(failures=2, window=60, clock=clock)
    limiter.failed("1.2.3.4")
    limiter.failed("1.2.3.4")
    assert limiter.blocked("1.2.3.4") and not limiter.blocked("5.6.7.8")
    clock.now += 61
    assert not limiter.blocked("1.2.3.4")


# ----- the command and its TLS ----------------------------------------------------------------

def test_the_self_signed_certificate_is_what_the_fingerprint_says():
    cert, key = tls.self_signed(("console.example",))
    context = tls.server_context(cert, key)
    assert isinstance(context, ssl.SSLContext)
    der = ssl.PEM_cert_to_DER_cert(cert.decode())
    import hashlib
    assert tls.fingerprint(cert) == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


@pytest.mark.parametrize("argv, message", [
    (["console", "--insecure-http", "--listen", "0.0.0.0:8080"], "loopback"),
    (["console", "--tls-cert", "c.pem"], "both"),
    (["console", "--listen", "nowhere"], "bad --listen"),
    (["console", "--period", "0"], "positive"),
])
def test_the_command_refuses_unsafe_or_broken_settings(argv, message):
    args = build_parser("console").parse_args(argv)
    with pytest.raises(CommandError, match=message):
        args.func(args)
