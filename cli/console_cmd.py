"""`maillage console`: a web console for the whole mesh, behind the admin credential.

Serves HTTPS by default: with the operator's certificate (--tls-cert/--tls-key), else with a
self-signed one made at start (its SHA-256 fingerprint is printed). Plain HTTP only on a loopback
address and only with --insecure-http. The console takes the endpoints and trust dir of its profile
(mutual TLS to the nodes) but never its access key: operators log in with an admin access key, which
the console checks with an admin call and then uses for its own calls while they are logged in.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys

from maillage.cli.common import CREDENTIALS_NOTE, CommandError, add_endpoint_option, profile_of

DEFAULT_LISTEN = "127.0.0.1:8443"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console", help="a web console for the whole mesh (fleet, sites, policies, buckets), admin login",
        description="Serve a web console for the whole mesh: a fleet view grouped by country, region "
                    "and site (search, filter by state, counts), each site's nodes with capacity, use, "
                    "repair and scrub progress and the state changes seen, each residency policy's "
                    "sites and state, and the buckets of every tenant (names only: the console never "
                    "shows a key name). Pages update without reloading. Operators log in with an admin "
                    "access key; the console uses the profile's endpoints and trust dir, not its key. "
                    + CREDENTIALS_NOTE)
    add_endpoint_option(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where to serve the console (default: {DEFAULT_LISTEN}; port 0: any free port)")
    p.add_argument("--tls-cert", metavar="FILE", help="the console's certificate (PEM, with its chain)")
    p.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    p.add_argument("--insecure-http", action="store_true",
                   help="serve plain HTTP (only on a loopback address): credentials and pages unencrypted")
    p.add_argument("--period", type=float, default=2.0, metavar="SECONDS",
                   help="seconds between two looks at the mesh while someone is logged in (default: 2)")
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                   help="how long each node has to answer a look before it is shown unreachable (default: 2)")
    p.add_argument("--idle-minutes", type=float, default=30.0, metavar="M",
                   help="a session ends after this many minutes without a request (default: 30; "
                        "and 8 hours after login in any case)")
    p.set_defaults(func=console_command)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise CommandError(f"bad --listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_command(args: argparse.Namespace) -> int:
    from maillage.cli.console import tls

    for name in ("period", "timeout", "idle_minutes"):
        if not getattr(args, name) > 0:
            raise CommandError(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    host, port = _listen(args.listen)
    if args.insecure_http:
        if not _loopback(host):
            raise CommandError(f"--insecure-http serves credentials in clear: only on a loopback address, "
                               f"not {host}")
        if args.tls_cert or args.tls_key:
            raise CommandError("--insecure-http and --tls-cert/--tls-key: choose one")
    elif bool(args.tls_cert) != bool(args.tls_key):
        raise CommandError("give both --tls-cert and --tls-key (or neither, for a self-signed certificate)")
    profile = profile_of(args, key_optional=True)

    context = None
    if not args.insecure_http:
        try:
            if args.tls_cert:
                with open(args.tls_cert, "rb") as f:
                    cert = f.read()
                with open(args.tls_key, "rb") as f:
                    key = f.read()
                what = f"certificate {args.tls_cert}"
            else:
                cert, key = tls.self_signed((host,))
                what = "self-signed certificate for localhost, 127.0.0.1, ::1" + (
                    f", {host}" if host not in ("localhost", "127.0.0.1", "::1") else "")
            context = tls.server_context(cert, key)
            what += f" (SHA-256 {tls.fingerprint(cert)})"
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot use the TLS certificate: {exc}") from None

    from maillage.cli.console.app import ConsoleConfig, build_app
    from maillage.cli.console.mesh_source import MeshSource

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    source = MeshSource(profile, timeout=args.timeout)
    config = ConsoleConfig(secure=context is not None, period=args.period, session_idle=args.idle_minutes * 60)
    app = build_app(source, config)

    def announce(url: str) -> None:
        print(f"maillage console: {url}", flush=True)
        if context is None:
            print("  !! PLAIN HTTP (--insecure-http): access keys and pages cross unencrypted; loopback only",
                  flush=True)
        else:
            print(f"  TLS: {what}", flush=True)
        print(f"  log in with an admin access key of the mesh (endpoints {', '.join(profile.endpoints)}); "
              "Ctrl-C stops the console", flush=True)

    try:
        asyncio.run(serve(app, host, port, context, announce))
    except OSError as exc:
        raise CommandError(f"cannot serve on {args.listen}: {exc.strerror or exc}") from None
    return 0


async def serve(app, host: str, port: int, context, announce, stop: asyncio.Event | None = None) -> None:
    """Serve `app` until `stop` is set (None: until SIGINT or SIGTERM); `announce(url)` once it listens."""
    from aiohttp import web

    from maillage.cli.console.app import KEEPALIVE
    from maillage.node.s3.door import Door, DoorLimits

    # aiohttp's keep-alive timeout is also its deadline for a request line and headers; the door
    # (the S3 port's) caps connections, per address too, and bounds TLS handshakes before any HTTP.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE, handle_signals=False)
    await runner.setup()
    assert runner.server is not None
    door = Door(runner.server, context, DoorLimits(max_connections=128, max_per_address=32,
                                                   handshake_timeout=5.0, header_timeout=KEEPALIVE))
    try:
        bound_port = await door.start(host, port)
        shown = f"[{host}]" if ":" in host else host
        announce(f"{'https' if context is not None else 'http'}://{shown}:{bound_port}/")
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await door.stop()
        await runner.cleanup()
