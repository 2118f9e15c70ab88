"""`maillage console` in a real browser: headless Chromium (Debian `chromium` + `chromium-driver`)
driven by selenium.

Against a real local mesh: the console runs as its own process (HTTPS with its self-signed
certificate, whose printed fingerprint must be the one it serves), a caller without a session or
with a wrong key gets nothing, the admin key logs in, every site of the mesh shows, a killed node
turns down on the page without a reload, a screenshot is saved, no response of the console
carries an object key name, and revoking the admin key ends the session (the page goes back to the
login). Against 1,000 simulated sites: the fleet view renders (page load, the
JSON, one DOM build, layout) in under 2 s, measured with the browser's performance timing, and a
site named like markup renders as text.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from maillage.cli.console import tls
from maillage.cli.console.app import ConsoleConfig, build_app
from maillage.cli.console.synthetic import SyntheticSource
from maillage.cli.console_cmd import serve
from maillage.client import Client
from maillage.placement import Policy
from maillage.proto.trust.access import revoke_key
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout, node_env
from maillage.testing.ports import free_port

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium comes with the test extra")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SITES = (SiteSpec("paris-1", "eu/fr/idf"), SiteSpec("toulouse-1", "eu/fr/occitanie"),
         SiteSpec("lyon-1", "eu/fr/ara"), SiteSpec("munich-1", "eu/de/bayern"))
POLICIES = (Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
            Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2))
FAST = ("--heartbeat-interval", "0.3", "--suspect-after", "1.5", "--down-after", "4")
VICTIM = "munich-1"
BUCKET = "radiology"
KEY_NAMES = ("patients/dupont-jean-1961/ct-0001.dcm", "patients/martin-claire-1984/irm.dcm")
COOKIE = "__Host-maillage-console"
HOSTILE = '<img src=x onerror="window.__owned=1">'
RENDER_LIMIT = 2.0      # seconds: the bound for 1,000 sites
SCREENSHOT_ENV = "MAILLAGE_CONSOLE_SCREENSHOT"    # also save the screenshot there (docs/console.png)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `apt-get install chromium chromium-driver` (.ci/run does)")
    return path


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--disable-extensions"):
        options.add_argument(arg)
    options.binary_location = _tool("chromium")
    options.accept_insecure_certs = True     # the console's self-signed certificate (its fingerprint is checked)
    driver = webdriver.Chrome(options=options, service=Service(_tool("chromedriver")))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def eventually(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def login(driver, url: str, key_id: str, secret: str) -> None:
    driver.get(url + "login")
    driver.find_element(By.ID, "key_id").send_keys(key_id)
    driver.find_element(By.ID, "secret").send_keys(secret)
    button = driver.find_element(By.ID, "login")
    button.click()
    WebDriverWait(driver, 15).until(detached(button))   # the answer page has loaded


def detached(element):
    """A wait condition: `element` no longer belongs to the page. Chromedriver says so either with
    a stale-element error or, while the new page replaces the old, with an inspector error ("Node
    with given id does not belong to the document"): both mean the same here."""
    def check(_driver) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:   # StaleElementReferenceException is one
            return True
        return False
    return check


def row_state(driver, site: str) -> str | None:
    """The state class of a site's row in the fleet view (None: not shown)."""
    return driver.execute_script(
        "const r = [...document.querySelectorAll('tr.site')].find(r => r.dataset.site === arguments[0]);"
        "return r && r.offsetParent !== null ? [...r.classList].find(c => c.startsWith('st-')) : null;", site)


def unverified() -> ssl.SSLContext:
    """For urllib against the console: its certificate is checked by fingerprint instead."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def get(url: str, cookie: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Cookie": f"{COOKIE}={cookie}"} if cookie else {})
    try:
        with urllib.request.urlopen(request, context=unverified(), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def start_console(mesh: LocalMesh, out: Path) -> tuple[subprocess.Popen, str, str]:
    """`maillage console` on the mesh's admin profile (endpoints and trust dir; its key is not used):
    (process, URL, fingerprint) once it says where it listens."""
    env = node_env() | {"MAILLAGE_CONFIG_FILE": str(mesh.config_file)}
    argv = [sys.executable, "-m", "maillage.cli", "console", "--profile", "admin",
            "--listen", f"127.0.0.1:{free_port()}", "--period", "0.5", "--timeout", "1"]
    with open(out, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def announced():
        text = out.read_text()
        if proc.poll() is not None:
            raise AssertionError(f"console exited {proc.returncode}:\n{text}")
        url = re.search(r"maillage console: (https://\S+)", text)
        fp = re.search(r"SHA-256 ([0-9A-F:]{95})", text)
        return url and fp and (url.group(1), fp.group(1))

    url, fingerprint = eventually(announced, 20, "the console listening")
    return proc, url, fingerprint


def test_the_console_shows_every_site_and_a_killed_node_turning_down(browser, tmp_path):
    began = time.monotonic()
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path / "mesh", extra_args=FAST) as mesh:
        with mesh.admin() as admin:      # bucket creation asks owners the nodes must first see up
            eventually(lambda: all(not isinstance(a, str) and all(p.state == "up" for p in a.peers)
                                   for a in admin.statuses(timeout=2).values()), 20, "every node seen up")
        with Client(profile=mesh.profile) as client:
            client.create_bucket(BUCKET, "france-only")
            for key in KEY_NAMES:
                client.put_object(BUCKET, key, b"DICM" * 256)
        console, url, fingerprint = start_console(mesh, tmp_path / "console.out")
        try:
            # the certificate served is the one whose fingerprint the console printed
            host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
            served = ssl.get_server_certificate((host, int(port)))
            assert tls.fingerprint(served.encode()) == fingerprint

            # no session: nothing
            for path in ("api/fleet", "api/policies", "api/buckets", "api/site?name=paris-1"):
                status, body = get(url + path)
                assert status == 401 and json.loads(body) == {"error": "login required"}, (path, status)

            admin = mesh.admin_profile.credentials
            login(browser, url, admin.key_id, "not-the-secret")
            assert "refused" in browser.find_element(By.ID, "message").text
            assert browser.get_cookie(COOKIE) is None
            assert not any(s.name in browser.page_source for s in SITES)
            tenant = mesh.profile.credentials             # a valid key, but not an admin key
            login(browser, url, tenant.key_id, tenant.secret)
            assert "refused" in browser.find_element(By.ID, "message").text
            assert browser.get_cookie(COOKIE) is None

            login(browser, url, admin.key_id, admin.secret)
            eventually(lambda: all(row_state(browser, s.name) == "st-up" for s in SITES), 20,
                       "every site of the mesh shown up")
            browser.execute_script("window.__notReloaded = true;")
            killed = time.monotonic()
            mesh.kill(VICTIM)
            eventually(lambda: row_state(browser, VICTIM) == "st-down", 30, f"{VICTIM} shown down")
            print(f"\n{VICTIM} shown down {time.monotonic() - killed:.1f} s after its kill")
            assert browser.execute_script("return window.__notReloaded === true;"), "the page reloaded"
            assert all(row_state(browser, s.name) == "st-up" for s in SITES if s.name != VICTIM)
            summary = browser.find_element(By.ID, "summary").text
            assert "4 sites" in summary and "1 down" in summary, summary
            browser.save_screenshot(str(tmp_path / "console.png"))
            if os.environ.get(SCREENSHOT_ENV):
                browser.save_screenshot(os.environ[SCREENSHOT_ENV])

            # the site's page: its node down, and the change the console saw
            browser.get(url + "#site/" + VICTIM)
            events = "const e = document.querySelector('#site ul.events'); return e ? e.textContent : '';"
            eventually(lambda: "down" in browser.execute_script(events), 10, "the down event on the site's page")
            # every response of the console, logged in: bucket names yes, key names never
            cookie = browser.get_cookie(COOKIE)["value"]
            bodies = [get(url + p, cookie) for p in ("", "api/fleet", "api/policies", "api/buckets",
                                                     *(f"api/site?name={s.name}" for s in SITES))]
            assert all(status == 200 for status, _ in bodies)
            everything = "\n".join(body for _, body in bodies) + browser.page_source
            assert BUCKET in json.loads(bodies[3][1])["tenants"][0]["buckets"][0]["name"]
            for key in KEY_NAMES:
                for part in (key, *key.split("/")[1:]):
                    assert part not in everything, part

            # the admin key revoked: the console ends its sessions, the page goes back to the login
            browser.get(url)
            with mesh.admin() as cluster:
                cluster.edit_access(lambda doc: revoke_key(doc, admin.key_id))
            eventually(lambda: browser.current_url.endswith("/login?ended=1"), 15, "back to the login page")
            assert "session ended" in browser.find_element(By.ID, "message").text
            assert get(url + "api/fleet", cookie)[0] == 401
        finally:
            console.terminate()
            console.wait(timeout=10)
    print(f"console browser test on a real mesh: {time.monotonic() - began:.1f} s")


class ThreadedConsole:
    """The console app over a synthetic fleet, served over HTTPS from a thread of this process."""

    def __init__(self, source: SyntheticSource) -> None:
        self.source = source
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        cert, key = tls.self_signed(())

        def announce(url: str) -> None:
            self.url = url
            self._ready.set()

        await serve(build_app(self.source, ConsoleConfig(period=1.0)), "127.0.0.1", 0,
                    tls.server_context(cert, key), announce, self._stop)

    def __enter__(self) -> ThreadedConsole:
        self._thread.start()
        assert self._ready.wait(10), "the console did not start"
        return self

    def __exit__(self, *exc) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_a_fleet_of_1000_simulated_sites_renders_in_under_2_s(browser):
    source = SyntheticSource(1000, key_id="MKSYNTHETIC", secret="synthetic-secret", extra_site_names=(HOSTILE,))
    with ThreadedConsole(source) as console:
        login(browser, console.url, "MKSYNTHETIC", "synthetic-secret")
        mark = "return performance.getEntriesByName('fleet-rendered').map(e => e.startTime)[0] || null;"
        eventually(lambda: browser.execute_script(mark), 10, "the first fleet view")
        browser.get(console.url)                  # the measured load: the mesh's data is ready
        rendered_ms = eventually(lambda: browser.execute_script(mark), 10, "the fleet view")
        fetch_ms = browser.execute_script(
            "const e = performance.getEntriesByType('resource').find(e => e.name.includes('/api/fleet'));"
            "return e ? e.duration : null;")
        rows = browser.execute_script("return document.querySelectorAll('tr.site').length;")
        print(f"\nfleet view of 1,000 simulated sites: rendered {rendered_ms:.0f} ms after navigation start "
              f"(/api/fleet fetched in {fetch_ms:.0f} ms), {rendered_ms / 1000 / RENDER_LIMIT:.2f}x the "
              f"{RENDER_LIMIT:.0f} s limit")
        # every group open: 1,000 rows laid out
        expand_ms = browser.execute_script(
            "const t = performance.now(); document.getElementById('expand').click();"
            "void document.body.offsetHeight; return performance.now() - t;")
        visible = browser.execute_script(
            "return [...document.querySelectorAll('tr.site')].filter(r => r.offsetParent !== null).length;")
        print(f"every group opened: 1,000 rows rebuilt and laid out in {expand_ms:.0f} ms")
        assert rows == 1000 == visible
        assert rendered_ms < RENDER_LIMIT * 1000          # the bound, on the fleet view as it opens
        assert expand_ms < 5000                           # a sanity bound: 225-1166 ms seen, with the machine shared
        assert browser.execute_script("return window.__owned === undefined;")
        texts = browser.execute_script(
            "return [...document.querySelectorAll('tr.site td.name')].map(td => td.textContent);")
        assert HOSTILE in texts                        # the markup-like name shows as text
        summary = browser.find_element(By.ID, "summary").text
        assert "1000 sites" in summary
        # search narrows and opens the groups
        box = browser.find_element(By.ID, "search")
        box.send_keys("site-000")
        eventually(lambda: browser.find_element(By.ID, "shown").text.startswith("10 of 1000"), 5, "search")
        assert row_state(browser, "fr-site-0000") is not None
