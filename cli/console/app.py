"""The console's web app (aiohttp): login, the pages, the JSON they poll, the background observer.

Every port is hostile: request bodies are capped (`MAX_BODY`: only the login form has one), every
data route answers 401 with nothing in it unless the request carries a live session cookie, a
failed login is counted against its client address (429 past the limit) and checked with a
deadline, and no handler lets a traceback out. The console is read-only: the only state-changing
requests are POST /login and POST /logout (a cross-origin POST is refused by its Origin header,
and the session cookie is SameSite=Strict). Pages are static files; the page renders the JSON with
text nodes or escaped markup, under a Content-Security-Policy allowing only the console's own script.

The observer polls the fleet source in a thread every `period` seconds while someone is logged in,
with the latest login's key. Each node is asked with its own deadline by the source, and pages are
always answered at once from the last observation, so a dead node never stalls a page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from maillage.cli.console.fleet import (
    EventLog,
    FleetSource,
    Observation,
    Refused,
    Unavailable,
    bucket_view,
    fleet_view,
    policy_view,
    site_view,
)
from maillage.cli.console.sessions import LoginLimiter, Sessions

log = logging.getLogger("maillage.console")

MAX_BODY = 4096                 # the login form: two short fields
MAX_KEY_ID, MAX_SECRET = 128, 256
MAX_NAME = 256                  # a site name in a query
VERIFY_SLOTS = 4                # login checks in flight against the mesh at once
# the HTTP server's own bounds (aiohttp's AppRunner): an idle connection is closed after 30 s, not
# aiohttp's hour; its parser refuses a request line or a header field over 8 KiB (400) by itself
KEEPALIVE = 30.0
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",    # no-referrer would make browsers send `Origin: null`
    "Cache-Control": "no-store",
}
MESSAGES = {
    "refused": "The mesh refused this key: unknown, revoked, wrong secret, or not an admin key.",
    "unavailable": "Could not reach the mesh to check the key. Try again in a moment.",
    "limited": "Too many failed logins from this address. Wait a few minutes.",
    "invalid": "Give an access key id and its secret.",
    "ended": "Your session ended. Log in again.",
}


@dataclass(frozen=True)
class ConsoleConfig:
    secure: bool = True             # HTTPS: the cookie is Secure and __Host- prefixed
    period: float = 2.0             # seconds between observations
    login_deadline: float = 10.0    # seconds a login check may take
    session_lifetime: float = 8 * 3600
    session_idle: float = 30 * 60


def _static(name: str) -> bytes:
    return (resources.files("maillage.cli.console") / "static" / name).read_bytes()


class Observer:
    """The last observation and the views built from it, refreshed in the background."""

    def __init__(self, source: FleetSource, sessions: Sessions, period: float) -> None:
        self.source = source
        self.sessions = sessions
        self.period = period
        self.events = EventLog()
        self.observation: Observation | None = None
        self.generation = 0
        self.problem = ""
        self._views: dict[str, bytes] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.period)
            except TimeoutError:
                pass
            self._wake.clear()
            session = self.sessions.latest()
            if session is None:
                continue
            await self.observe_once(session.key_id, session.secret)

    async def observe_once(self, key_id: str, secret: str) -> None:
        try:
            obs = await asyncio.to_thread(self.source.observe, key_id, secret)
        except Refused:
            ended = self.sessions.drop_key(key_id, secret)
            self.problem = f"the mesh no longer takes the key {key_id}: {ended} session(s) ended"
            log.warning("console: %s", self.problem)
            return
        except Unavailable as exc:
            self.problem = f"the last look at the mesh failed: {str(exc)[:200]}"
            return
        except Exception as exc:  # a bug or a surprise of the source: reported, the observer goes on
            log.exception("console: observation failed")
            self.problem = f"observation failed ({type(exc).__name__})"
            return
        self.problem = ""
        self.events.update(obs)
        self.observation = obs
        self.generation += 1
        self._views.clear()

    def view(self, name: str) -> bytes:
        """The JSON of a whole-mesh view for the last observation (built once per observation)."""
        cached = self._views.get(name)
        if cached is not None:
            return cached
        obs = self.observation
        if obs is None:
            body: Any = {"generation": 0, "pending": True, "problem": self.problem}
        elif name == "fleet":
            body = fleet_view(obs, self.generation, self.events)
        elif name == "policies":
            body = {"generation": self.generation, "policies": policy_view(obs)}
        else:
            body = {"generation": self.generation, **bucket_view(obs)}
        data = json.dumps(body, separators=(",", ":")).encode()
        if obs is not None:
            self._views[name] = data
        return data


def build_app(source: FleetSource, config: ConsoleConfig = ConsoleConfig(), *,
              clock: Callable[[], float] = time.monotonic) -> web.Application:
    """The console over `source`; `clock` (seconds) times sessions and failed logins."""
    sessions = Sessions(lifetime=config.session_lifetime, idle=config.session_idle, clock=clock)
    limiter = LoginLimiter(clock=clock)
    cookie = "__Host-maillage-console" if config.secure else "maillage-console"
    login_page = _static("login.html").decode()
    index_page = _static("index.html")
    assets = {name: _static(name) for name in ("console.js", "console.css")}
    verify_slots = asyncio.Semaphore(VERIFY_SLOTS)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:     # redirects, 404, 405, 413: raised with the same headers
            exc.headers.update(SECURITY_HEADERS)
            raise
        except Exception:
            log.exception("console: %s %s failed", request.method, request.path[:100])
            response = web.json_response({"error": "internal error"}, status=500)
        response.headers.update(SECURITY_HEADERS)
        return response

    app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
    observer = Observer(source, sessions, config.period)

    def session_of(request: web.Request) -> Any:
        return sessions.get(request.cookies.get(cookie))

    def login_response(message: str = "", status: int = 200) -> web.Response:
        text = login_page.replace("<!--MESSAGE-->", MESSAGES.get(message, ""))
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    def same_origin(request: web.Request) -> bool:
        """No Origin header (not a browser's cross-site form) or this console's own origin."""
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    def json_bytes(data: bytes, status: int = 200) -> web.Response:
        return web.Response(body=data, status=status, content_type="application/json")

    def need_login() -> web.Response:
        return web.json_response({"error": "login required"}, status=401)

    async def index(request: web.Request) -> web.StreamResponse:
        if session_of(request) is None:
            raise web.HTTPSeeOther("/login")
        return web.Response(body=index_page, content_type="text/html", charset="utf-8")

    async def login_form(request: web.Request) -> web.Response:
        return login_response("ended" if request.query.get("ended") == "1" else "")

    async def login(request: web.Request) -> web.Response:
        if not same_origin(request):
            return web.Response(text="cross-origin login refused", status=403)
        address = request.remote or "?"
        if limiter.blocked(address):
            return login_response("limited", 429)
        try:
            form = await request.post()
        except (web.HTTPRequestEntityTooLarge, ValueError):
            return login_response("invalid", 413 if request.content_length and
                                  request.content_length > MAX_BODY else 400)
        key_id, secret = form.get("key_id"), form.get("secret")
        if (not isinstance(key_id, str) or not isinstance(secret, str) or not key_id.strip() or not secret
                or len(key_id) > MAX_KEY_ID or len(secret) > MAX_SECRET):
            return login_response("invalid", 400)
        key_id = key_id.strip()
        try:
            async with verify_slots:
                await asyncio.wait_for(asyncio.to_thread(source.verify, key_id, secret),
                                       timeout=config.login_deadline)
        except Refused:
            limiter.failed(address)
            log.warning("console: refused login with key %s from %s", key_id[:40], address)
            return login_response("refused", 401)
        except (Unavailable, TimeoutError):
            return login_response("unavailable", 503)
        token = sessions.create(key_id, secret)
        log.info("console: key %s logged in from %s", key_id[:40], address)
        response = web.HTTPSeeOther("/")
        response.set_cookie(cookie, token, path="/", secure=config.secure, httponly=True, samesite="Strict",
                            max_age=int(config.session_lifetime))
        observer.wake()
        raise response

    async def logout(request: web.Request) -> web.Response:
        if not same_origin(request):
            return web.Response(text="cross-origin logout refused", status=403)
        sessions.drop(request.cookies.get(cookie))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(cookie, path="/", secure=config.secure, httponly=True, samesite="Strict")
        raise response

    async def fleet(request: web.Request) -> web.Response:
        if session_of(request) is None:
            return need_login()
        since = request.query.get("since", "")
        if since.isdigit() and len(since) < 20 and int(since) == observer.generation and observer.generation:
            return web.json_response({"generation": observer.generation, "unchanged": True,
                                      "problem": observer.problem})
        body = observer.view("fleet")
        if observer.problem and observer.observation is not None:   # a fresh problem with old data
            data = json.loads(body)
            data["problem"] = observer.problem
            body = json.dumps(data, separators=(",", ":")).encode()
        return json_bytes(body)

    async def site(request: web.Request) -> web.Response:
        if session_of(request) is None:
            return need_login()
        name = request.query.get("name", "")
        if not name or len(name) > MAX_NAME:
            return web.json_response({"error": "give a site name"}, status=400)
        obs = observer.observation
        found = site_view(obs, name, observer.events) if obs is not None else None
        if found is None:
            return web.json_response({"error": "no such site"}, status=404)
        return web.json_response({"generation": observer.generation, **found})

    async def policies(request: web.Request) -> web.Response:
        if session_of(request) is None:
            return need_login()
        return json_bytes(observer.view("policies"))

    async def buckets(request: web.Request) -> web.Response:
        if session_of(request) is None:
            return need_login()
        return json_bytes(observer.view("buckets"))

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = assets.get(name)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type=STATIC_TYPES[name[name.rindex("."):]])

    app.router.add_get("/", index)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/fleet", fleet)
    app.router.add_get("/api/site", site)
    app.router.add_get("/api/policies", policies)
    app.router.add_get("/api/buckets", buckets)
    app.router.add_get("/static/{name}", asset)

    async def observe_in_background(app: web.Application) -> Any:
        task = asyncio.create_task(observer.run())
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        close = getattr(source, "close", None)
        if close is not None:
            await asyncio.to_thread(close)

    app.cleanup_ctx.append(observe_in_background)
    return app
