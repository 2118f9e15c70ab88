"""The S3 door's forwarding in-process (`node/s3/forward.py`): a front aiohttp server passes its
requests through a `Forwarder` to target doors served over TLS with node certificates of a test
cluster, all in the test's loop. What is passed on as it came, what is not, which target is tried
when, what a failure answers and what the forwarding node logs. The real mesh is
`tests/cluster/test_s3_forwarding.py`.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from maillage.node.s3.errors import S3Error
from maillage.node.s3.forward import FORWARDED_BY, FORWARDED_TO, Forwarder
from maillage.node.s3.server import tls_context
from maillage.proto.trust.identity import TlsIdentity, create_cluster, issue_node_certificate

from .conftest import run

SECRET_PATH = "/fr-bucket/dossier%20confidentiel/scan%2B1.bin"
QUERY = "partNumber=2&uploadId=abc%3D"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("forward-tls")
    cluster = create_cluster(d / "cluster", "forward")
    paris = issue_node_certificate(cluster, "paris-1", d / "paris-1", sans=("127.0.0.1",))
    paris2 = issue_node_certificate(cluster, "paris-2", d / "paris-2", sans=("127.0.0.1",))
    issue_node_certificate(cluster, "munich-1", d / "munich-1")
    # Another CA's certificate for the same address, as `--s3-tls-cert` serves (e.g. a public CA's).
    public = issue_node_certificate(create_cluster(d / "public", "public"), "www", d / "public-www",
                                    sans=("127.0.0.1",))
    return {"paris": tls_context(paris.cert, paris.key), "paris-2": tls_context(paris2.cert, paris2.key),
            "munich": TlsIdentity.load_node(d / "munich-1"),
            "public": tls_context(public.cert, public.key),
            "public+node": tls_context(public.cert, public.key, node=("paris-1.node.maillage", paris.cert, paris.key)),
            "public-ca": d / "public" / "ca.pem"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(handler, ssl_context=None) -> AsyncIterator[int]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    async def handle(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    app.router.add_route("*", "/{path:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


class Target:
    """A target door: records what it got, answers with a streamed body."""

    def __init__(self, answer: bytes = b"", *, abort_after: int | None = None) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answer = answer
        self.abort_after = abort_after

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        got = dict(method=request.method, raw_path=request.raw_path, headers=request.headers.copy())
        self.seen.append(got)
        if self.abort_after is not None:
            await request.content.readexactly(self.abort_after)
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        got["sha"] = hashlib.sha256(await request.read()).hexdigest()
        response = web.StreamResponse(status=201, headers={"ETag": '"e1"', "x-amz-request-id": "TARGET",
                                                           "Content-Length": str(len(self.answer))})
        await response.prepare(request)
        for i in range(0, len(self.answer) if request.method != "HEAD" else 0, 100_000):
            await response.write(self.answer[i:i + 100_000])
        await response.write_eof()
        return response


@asynccontextmanager
async def front(pki, targets: dict[str, int]) -> AsyncIterator[tuple[int, Forwarder]]:
    """A door of munich-1 forwarding every request to `targets` (node id -> port) in that order."""
    forwarder = Forwarder("munich-1", None, pki["munich"])  # type: ignore[arg-type]  # addresses given below
    for node, port in targets.items():
        forwarder._addresses[node] = (float("inf"), f"127.0.0.1:{port}")

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await forwarder.forward(request, list(targets), policy="france-only")
        except S3Error as err:
            return web.Response(status=err.status, text=f"{err.code}: {err.message}")

    try:
        async with serving(handle) as port:
            yield port, forwarder
    finally:
        await forwarder.close()


async def body_pieces(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i:i + 65536]


def test_a_request_and_its_answer_pass_as_they_are(pki) -> None:
    body = bytes(range(256)) * 12_000  # ~3 MiB, streamed
    answer = b"A" * 1_500_000

    async def main() -> None:
        target = Target(answer)
        async with serving(target, pki["paris"]) as port, front(pki, {"paris-1": port}) as (door, forwarder), \
                aiohttp.ClientSession(auto_decompress=False) as http:
            headers = {"Host": "s3.example.org:9000", "Authorization": "AWS4-HMAC-SHA256 Credential=MK/x",
                       "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(len(body)),
                       "Content-Type": "application/x-scan", FORWARDED_BY: "someone-else", "Keep-Alive": "timeout=5",
                       "User-Agent": "aws-cli/2.0"}
            async with http.put(f"http://127.0.0.1:{door}{SECRET_PATH}?{QUERY}", data=body_pieces(body),
                                headers=headers, skip_auto_headers=("Content-Type",)) as r:
                assert r.status == 201 and await r.read() == answer
                assert r.headers["ETag"] == '"e1"' and r.headers["x-amz-request-id"] == "TARGET"
                assert r.headers[FORWARDED_TO] == "paris-1"
            async with http.head(f"http://127.0.0.1:{door}{SECRET_PATH}", headers={"Host": "h"}) as r:
                assert r.status == 201 and r.headers["Content-Length"] == str(len(answer))
            assert forwarder.forwarded == 2
        put, head = target.seen
        assert put["method"] == "PUT" and put["raw_path"] == f"{SECRET_PATH}?{QUERY}"  # still encoded
        for name in ("Host", "Authorization", "x-amz-content-sha256", "Content-Length", "Content-Type"):
            assert put["headers"][name] == headers[name], name
        assert put["headers"].getall(FORWARDED_BY) == ["munich-1"]  # the client's own is replaced
        assert "Keep-Alive" not in put["headers"]  # hop by hop
        assert put["headers"].getall("User-Agent") == ["aws-cli/2.0"]  # the client's own, none added
        assert put["sha"] == hashlib.sha256(body).hexdigest()
        assert head["method"] == "HEAD" and head["headers"]["Host"] == "h"

    run(main())


def test_the_next_target_is_tried_while_no_body_byte_was_sent(pki, caplog) -> None:
    async def main() -> None:
        good = Target(b"ok")
        async with serving(good, pki["paris"]) as port, \
                front(pki, {"down-1": closed_port(), "paris-1": port}) as (door, forwarder), \
                aiohttp.ClientSession() as http:
            async with http.put(f"http://127.0.0.1:{door}{SECRET_PATH}", data=b"x" * 1000) as r:
                assert r.status == 201 and r.headers[FORWARDED_TO] == "paris-1"
            # down-1 failed: tried last from now on (no connection attempt before paris-1)
            assert list(forwarder._order(["down-1", "paris-1"])) == ["paris-1", "down-1"]
        assert len(good.seen) == 1

    with caplog.at_level(logging.DEBUG, logger="maillage"):
        run(main())
    assert "down-1" in caplog.text and "dossier" not in caplog.text and "fr-bucket" not in caplog.text


def test_no_target_answering_is_503_and_logs_no_key(pki, caplog) -> None:
    async def main() -> None:
        wrong_name = Target()  # serves paris-1's certificate, named toulouse-1 here
        async with serving(wrong_name, pki["paris"]) as port, \
                front(pki, {"down-1": closed_port(), "toulouse-1": port}) as (door, _), \
                aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{door}{SECRET_PATH}?{QUERY}") as r:
                text = await r.text()
                assert r.status == 503 and text.startswith("ServiceUnavailable: node munich-1 is outside")
                assert "down-1: cannot connect" in text and "toulouse-1: its certificate is not the node's" in text
        assert wrong_name.seen == []  # the TLS check refused it before any HTTP

    with caplog.at_level(logging.DEBUG, logger="maillage"):
        run(main())
    assert "toulouse-1" in caplog.text
    assert "dossier" not in caplog.text and "fr-bucket" not in caplog.text and "abc" not in caplog.text


def test_a_body_partly_sent_is_never_sent_to_another_target(pki, caplog) -> None:
    async def main() -> None:
        breaking, good = Target(abort_after=65536), Target(b"ok")
        async with serving(breaking, pki["paris"]) as bad_port, serving(good, pki["paris-2"]) as good_port:
            forwarder_targets = {"paris-1": bad_port, "paris-2": good_port}
            async with front(pki, forwarder_targets) as (door, forwarder), aiohttp.ClientSession() as http:
                forwarder._turn = iter(lambda: 0, 1)  # type: ignore[assignment]  # paris-1 first, always
                async with http.put(f"http://127.0.0.1:{door}{SECRET_PATH}",
                                    data=body_pieces(b"y" * 3_000_000)) as r:
                    text = await r.text()
                    assert r.status == 503 and "part of the body was sent" in text, text
        assert len(breaking.seen) == 1 and good.seen == []

    with caplog.at_level(logging.DEBUG, logger="maillage"):
        run(main())
    assert "paris-1" in caplog.text and "dossier" not in caplog.text and "fr-bucket" not in caplog.text


def test_a_door_with_another_certificate_shows_peers_the_nodes(pki) -> None:
    """A door serving another certificate (`--s3-tls-cert`) still serves its node's to a peer that
    asks for the node's name (SNI), and its own to everyone else; without that, nothing forwards."""
    async def main() -> None:
        for served, forwarded in (("public+node", True), ("public", False)):
            target = Target(b"ok")
            async with serving(target, pki[served]) as port, front(pki, {"paris-1": port}) as (door, _), \
                    aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{door}{SECRET_PATH}") as r:
                    assert (r.status == 201) is forwarded, served
                public_only = ssl.create_default_context(cafile=str(pki["public-ca"]))
                async with http.get(f"https://127.0.0.1:{port}/", ssl=public_only) as r:  # an S3 client
                    assert r.status == 201
            assert len(target.seen) == (2 if forwarded else 1)

    run(main())
