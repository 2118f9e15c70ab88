"""A TLS terminator in front of a plain HTTP server: how operators serve OpenStack Swift's proxy.

    with TlsFront(backend_port=18080) as front:   # haproxy from Debian (apt-get install haproxy)
        front.url        # https://127.0.0.1:<free port>
        front.ca_file    # the self-signed certificate a client verifies it with
        front.pid        # the terminator's process (its own process group), for CPU accounting

The terminator is Debian's haproxy (the usual one in front of Swift proxies), in HTTP mode with
keep-alive on both sides, TLS 1.2+ with an ECDSA P-256 certificate as maillage's nodes use, one
thread per core, run in the foreground (``-db``) from a configuration generated here
(`haproxy_config`). Everything it needs (configuration, certificate and key, its log) lives in a
temporary directory removed on exit, failure included; it is started with its own process group and
stopped by the pid kept at start (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TlsFront", "TlsFrontMissing", "TlsFrontError", "haproxy_binary", "haproxy_config", "write_certificate",
           "free_port", "process_start_time"]

HAPROXY = "haproxy"
HOST = "127.0.0.1"
INSTALL = "apt-get install haproxy"


class TlsFrontMissing(Exception):
    """No terminator binary here: the message says how to install it."""


class TlsFrontError(Exception):
    """The terminator did not start (the message quotes its log)."""


def haproxy_binary() -> str | None:
    """haproxy's path (PATH, then Debian's /usr/sbin, not on a user's PATH), or None."""
    return shutil.which(HAPROXY) or shutil.which(HAPROXY, path="/usr/sbin:/usr/local/sbin")


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat, as the Swift peer's pidfiles record it (None-safe: '' if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def write_certificate(directory: Path, host: str = HOST) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 server certificate for `host` and localhost, valid one day.

    Returns (haproxy's PEM: certificate then key, 0600; the certificate alone, for clients to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tls front {host}")])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        sans.insert(0, x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        sans.insert(0, x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    bundle, ca = directory / "front.pem", directory / "ca.pem"
    fd = os.open(bundle, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert_pem + key_pem)
    ca.write_bytes(cert_pem)
    return bundle, ca


def haproxy_config(*, listen_port: int, backend_port: int, pem: Path, host: str = HOST,
                   threads: int | None = None, timeout_s: int = 600) -> str:
    """haproxy's configuration: HTTPS on host:listen_port, plain HTTP to host:backend_port.

    HTTP mode (requests parsed, X-Forwarded-Proto added, as a real front does), keep-alive on both
    sides, bodies streamed (no request buffering), no logging (the backend logs every request)."""
    threads = threads or os.cpu_count() or 1
    return "\n".join([
        "global",
        f"    nbthread {threads}",
        "    maxconn 4096",
        "    ssl-default-bind-options ssl-min-ver TLSv1.2",
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    timeout connect 10s",
        f"    timeout client {timeout_s}s",
        f"    timeout server {timeout_s}s",
        "    timeout http-keep-alive 60s",
        "",
        "frontend tls_in",
        f"    bind {host}:{listen_port} ssl crt {pem} alpn http/1.1",
        "    http-request set-header X-Forwarded-Proto https",
        "    default_backend plain_out",
        "",
        "backend plain_out",
        f"    server backend {host}:{backend_port} maxconn 1024",
        "",
    ])


class TlsFront:
    """haproxy terminating TLS on a free loopback port, forwarding to `backend_port` (plain HTTP)."""

    def __init__(self, backend_port: int, *, listen_port: int | None = None, host: str = HOST,
                 binary: str | None = None, tmp_root: Path | None = None, start_timeout: float = 20.0) -> None:
        self.backend_port = backend_port
        self.listen_port = listen_port or free_port(host)
        self.host = host
        self.binary = binary or haproxy_binary()
        self.tmp_root = tmp_root
        self.start_timeout = start_timeout
        self.directory: Path | None = None
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.listen_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def version(self) -> str | None:
        if not self.binary:
            return None
        done = subprocess.run([self.binary, "-v"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        first = done.stdout.strip().splitlines()[:1]
        return first[0].split(" - ")[0] if first else None

    def _log(self) -> str:
        assert self.directory is not None
        try:
            return " | ".join((self.directory / "haproxy.log").read_text().strip().splitlines()[-3:])
        except OSError:
            return ""

    def start(self) -> TlsFront:
        if not self.binary:
            raise TlsFrontMissing(f"no {HAPROXY} here (TLS in front of Swift): `{INSTALL}` as root, then retry")
        self.directory = Path(tempfile.mkdtemp(prefix="maillage-tls-front-", dir=self.tmp_root))
        try:
            pem, self.ca_file = write_certificate(self.directory, self.host)
            config = self.directory / "haproxy.cfg"
            config.write_text(haproxy_config(listen_port=self.listen_port, backend_port=self.backend_port, pem=pem,
                                             host=self.host))
            with open(self.directory / "haproxy.log", "wb") as log:
                self._proc = subprocess.Popen([self.binary, "-db", "-f", str(config)], stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Until a TLS handshake with our certificate succeeds (the terminator exiting is an error)."""
        assert self._proc is not None and self.ca_file is not None
        context = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise TlsFrontError(f"{HAPROXY} exited ({self._proc.returncode}): {self._log() or 'no output'}")
            try:
                with socket.create_connection((self.host, self.listen_port), timeout=2) as raw, \
                        context.wrap_socket(raw, server_hostname=self.host):
                    return
            except (OSError, ssl.SSLError):
                if time.monotonic() > deadline:
                    raise TlsFrontError(f"{HAPROXY} did not answer TLS on {self.host}:{self.listen_port} within "
                                        f"{self.start_timeout:g} s: {self._log() or 'no output'}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to the pid started here (SIGKILL after 10 s), then remove the temporary directory."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None

    def __enter__(self) -> TlsFront:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
