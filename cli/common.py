"""Shared helpers of the `maillage` commands: endpoints, profiles, the SDK client, sizes, progress, tables."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence

ENDPOINT_ENV = "MAILLAGE_ENDPOINT"


class CommandError(Exception):
    """A failure to report in one line, without a traceback."""


# ----- endpoints and the client ---------------------------------------------------------------

CREDENTIALS_NOTE = (
    "Credentials come from a profile, as with the AWS tools: --profile NAME (or $MAILLAGE_PROFILE) in "
    "$MAILLAGE_CONFIG_FILE (default ~/.maillage/config), each setting overridable by $MAILLAGE_ENDPOINT, "
    "$MAILLAGE_ACCESS_KEY_ID, $MAILLAGE_SECRET_ACCESS_KEY and $MAILLAGE_TRUST_DIR (the cluster's "
    "ca.pem, client.pem, client.key and layout-signing.pub).")


def add_endpoint_option(parser: argparse.ArgumentParser) -> None:
    """--endpoint and --profile: where the mesh is and which access key to use."""
    parser.add_argument(
        "--endpoint", "-e", action="append", default=[], metavar="HOST:PORT",
        help=f"a node of the mesh to talk to (repeatable; default: ${ENDPOINT_ENV}, comma-separated, "
             "else the profile's `endpoint`). Any node will do: the client learns the layout from it.")
    parser.add_argument(
        "--profile", metavar="NAME",
        help="the profile of the config file to use (default: $MAILLAGE_PROFILE, else 'default'); "
             "it gives the endpoint, the access key and the trust dir")


def _given_endpoints(args: argparse.Namespace) -> list[str]:
    given = [a.strip() for value in (getattr(args, "endpoint", None) or []) for a in value.split(",") if a.strip()]
    for address in given:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise CommandError(f"bad endpoint {address!r}: expected HOST:PORT, e.g. 127.0.0.1:7001")
    return given


def profile_of(args: argparse.Namespace, *, key_optional: bool = False):
    """The profile a command uses: --endpoint and --profile, then $MAILLAGE_*, then the config file.
    Missing credentials are one clear line (a CommandError), never a traceback. `key_optional`: the
    command needs the endpoints and trust dir only (the console: operators log in with their key), so
    the profile's key is neither required nor read."""
    from maillage.client import CredentialsError, resolve_profile

    given = _given_endpoints(args)
    if not given:
        env = [a.strip() for a in os.environ.get(ENDPOINT_ENV, "").split(",") if a.strip()]
        for address in env:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise CommandError(f"bad endpoint {address!r} in ${ENDPOINT_ENV}: expected HOST:PORT, "
                                   "e.g. 127.0.0.1:7001")
    try:
        placeholder = "none" if key_optional else None
        profile = resolve_profile(given or None, profile=getattr(args, "profile", None), key_id=placeholder,
                                  secret=placeholder)
    except CredentialsError as exc:
        text = str(exc).replace("an endpoint (argument, ", "an endpoint (--endpoint HOST:PORT, ")
        raise CommandError(f"{text}. `maillage demo` prints ready-to-use settings; for a real mesh, "
                           "`maillage cluster init` writes an admin profile and `maillage key create` "
                           "prints one") from None
    for address in profile.endpoints:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise CommandError(f"bad endpoint {address!r}: expected HOST:PORT, e.g. 127.0.0.1:7001")
    return profile


def endpoints(args: argparse.Namespace) -> list[str]:
    """The endpoints of the command's profile."""
    return list(profile_of(args).endpoints)


@contextlib.contextmanager
def open_client(args: argparse.Namespace) -> Iterator:
    """A connected SDK Client on the command's profile; SDK errors become one-line CommandErrors."""
    from maillage.client import Client, MaillageError

    profile = profile_of(args)
    try:
        client = Client(profile=profile)
    except MaillageError as exc:
        raise CommandError(describe_error(exc)) from exc
    try:
        yield client
    except MaillageError as exc:
        raise CommandError(describe_error(exc)) from exc
    finally:
        client.close()


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    name = type(exc).__name__
    return text if name.lower() in text.lower().replace(" ", "") else f"{text} ({name})"


# ----- mesh paths: mesh://BUCKET/KEY ------------------------------------------------------------

MESH_SCHEME = "mesh://"


def is_mesh_path(text: str) -> bool:
    return text.startswith(MESH_SCHEME)


def split_mesh_path(text: str, *, need_key: bool = False) -> tuple[str, str]:
    """'mesh://bucket/some/key' or 'bucket/some/key' -> ('bucket', 'some/key')."""
    rest = text[len(MESH_SCHEME):] if is_mesh_path(text) else text
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise CommandError(f"{text!r}: no bucket name (expected {MESH_SCHEME}BUCKET/KEY)")
    if need_key and not key:
        raise CommandError(f"{text!r}: no key (expected {MESH_SCHEME}BUCKET/KEY)")
    return bucket, key


# ----- sizes, tables, progress ---------------------------------------------------------------

def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def table(rows: Sequence[Sequence[str]], *, header: Sequence[str] | None = None, indent: str = "",
          right: Sequence[int] = ()) -> str:
    """Aligned columns; `right` lists the columns to right-align (e.g. sizes)."""
    all_rows = [list(map(str, header))] if header else []
    all_rows += [list(map(str, r)) for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(max(map(len, all_rows)))]
    lines = []
    for r in all_rows:
        cells = [(c.rjust(widths[i]) if i in right else c.ljust(widths[i])) for i, c in enumerate(r)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


class Progress:
    """A one-line progress display on stderr: bytes, %, MB/s.

    On a terminal it redraws in place (at most ~10 times a second); elsewhere it prints only the
    final line, so logs stay readable. Objects smaller than `threshold` show nothing.
    """

    def __init__(self, label: str, total: int | None, *, threshold: int = 8 * 1024 * 1024,
                 stream=None, force: bool = False) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = force or total is None or total >= threshold
        self.tty = self.stream.isatty()
        self.began = time.monotonic()
        self._last_draw = 0.0
        self.done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if not self.enabled or not self.tty:
            return
        now = time.monotonic()
        if now - self._last_draw >= 0.1 or (self.total is not None and done >= self.total):
            self._last_draw = now
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.began, 1e-6)
        rate = self.done / elapsed / 1e6
        if self.total:
            pct = 100.0 * self.done / self.total
            width = 20
            fill = int(width * self.done / self.total)
            return (f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {pct:5.1f}%  "
                    f"{human_size(self.done)} / {human_size(self.total)}  {rate:6.1f} MB/s")
        return f"{self.label} {human_size(self.done)}  {rate:6.1f} MB/s"

    def finish(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
