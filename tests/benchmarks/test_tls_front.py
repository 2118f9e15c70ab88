"""The TLS terminator put in front of Swift's proxy: its generated configuration and certificate,
and (when Debian's haproxy is installed) a real start, HTTPS forwarded to a tiny local HTTP server,
stop by pid and the temporary directory gone, failures included."""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509

from maillage.benchmarks import tls_front
from maillage.benchmarks.tls_front import TlsFront, TlsFrontError, TlsFrontMissing

needs_haproxy = pytest.mark.skipif(tls_front.haproxy_binary() is None, reason=f"no haproxy: {tls_front.INSTALL}")


class _Echo(BaseHTTPRequestHandler):
    """Answers `METHOD PATH BODY-LENGTH SCHEME` (scheme from X-Forwarded-Proto, else http)."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = f"{self.command} {self.path} {length} {self.headers.get('X-Forwarded-Proto', 'http')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A plain HTTP server on a free loopback port (yields the port) standing for Swift's proxy."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_config_terminates_tls_and_forwards_plain_http(tmp_path):
    text = tls_front.haproxy_config(listen_port=18443, backend_port=18080, pem=tmp_path / "front.pem", threads=2)
    lines = [line.strip() for line in text.splitlines()]
    assert "nbthread 2" in lines and "mode http" in lines and "option http-keep-alive" in lines
    assert f"bind 127.0.0.1:18443 ssl crt {tmp_path / 'front.pem'} alpn http/1.1" in lines
    assert "http-request set-header X-Forwarded-Proto https" in lines
    assert "server backend 127.0.0.1:18080 maxconn 1024" in lines
    assert "ssl-default-bind-options ssl-min-ver TLSv1.2" in lines
    assert not any(line.startswith(("log ", "daemon", "option http-buffer-request")) for line in lines)
    binary = tls_front.haproxy_binary()
    if binary:  # haproxy itself accepts it
        pem, _ = tls_front.write_certificate(tmp_path)
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(tls_front.haproxy_config(listen_port=18443, backend_port=18080, pem=pem))
        done = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_certificate_is_self_signed_p256_for_loopback(tmp_path):
    bundle, ca = tls_front.write_certificate(tmp_path)
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    pem = bundle.read_bytes()
    assert pem.startswith(ca.read_bytes()) and b"PRIVATE KEY" in pem and b"PRIVATE KEY" not in ca.read_bytes()
    cert = x509.load_pem_x509_certificate(ca.read_bytes())
    assert cert.issuer == cert.subject and cert.public_key().curve.name == "secp256r1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    ssl.create_default_context(cafile=str(ca)).load_cert_chain(bundle)  # loads as a trust anchor and a chain


def _fake_binary(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-haproxy"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_terminator_that_exits_is_an_error_and_leaves_nothing(tmp_path):
    roots = tmp_path / "roots"
    roots.mkdir()
    front = TlsFront(1, binary=_fake_binary(tmp_path, "echo 'cannot bind socket' >&2; exit 1"), tmp_root=roots)
    with pytest.raises(TlsFrontError, match=r"haproxy exited \(1\): cannot bind socket"):
        front.start()
    assert list(roots.iterdir()) == [] and front.pid is None and front.directory is None


def test_a_terminator_that_never_answers_is_stopped_by_its_pid(tmp_path):
    roots = tmp_path / "roots"
    roots.mkdir()
    front = TlsFront(1, binary=_fake_binary(tmp_path, "exec sleep 60"), tmp_root=roots, start_timeout=0.5)
    pids: list[int] = []
    front._wait_ready = lambda real=front._wait_ready: (pids.append(front.pid), real())  # type: ignore[method-assign]
    with pytest.raises(TlsFrontError, match="did not answer TLS"):
        front.start()
    assert list(roots.iterdir()) == []
    with pytest.raises(ProcessLookupError):  # the sleep (our child, reaped) is gone
        os.kill(pids[0], 0)


def test_no_haproxy_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(tls_front, "haproxy_binary", lambda: None)
    with pytest.raises(TlsFrontMissing, match="apt-get install haproxy"):
        TlsFront(1).start()


@needs_haproxy
def test_front_forwards_https_to_the_plain_backend_and_stops(tmp_path):
    with echo_server() as port:
        front = TlsFront(port, tmp_root=tmp_path)
        with front:
            assert front.url == f"https://127.0.0.1:{front.listen_port}" and front.directory is not None
            assert front.pid is not None and os.getpgid(front.pid) == front.pid  # its own process group
            context = ssl.create_default_context(cafile=str(front.ca_file))
            conn = http.client.HTTPSConnection("127.0.0.1", front.listen_port, context=context, timeout=10)
            for i in range(3):  # one keep-alive connection, bodies both ways
                conn.request("PUT", f"/v1/AUTH_test/c/o{i}", body=b"x" * (100_000 * i))
                answer = conn.getresponse()
                assert answer.status == 200
                assert answer.read() == f"PUT /v1/AUTH_test/c/o{i} {100_000 * i} https".encode()
            conn.close()
            with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust it is refused
                untrusted = http.client.HTTPSConnection("127.0.0.1", front.listen_port,
                                                        context=ssl.create_default_context(), timeout=10)
                untrusted.request("GET", "/")
            pid, directory = front.pid, front.directory
        assert front.pid is None and not directory.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
