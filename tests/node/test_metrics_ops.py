"""The ops port's answers: /metrics only with the scrape token (401 and nothing else without it),
probes that say a word, short 4xx for anything else, hostile requests bounded."""

from __future__ import annotations

import asyncio

import pytest

from maillage.node.metrics.ops import MIN_TOKEN_LENGTH, OpsServer, ScrapeToken

TOKEN = "a" * 20 + "0123456789abcdef0123456789abcdef"
SECRET_SCRAPE = b"# the scrape\nmaillage_secret_series 1.0\n"


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(path: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{length}{extra}\r\n".encode() + body


def serve(ready: bool = True):
    state = {"ready": ready, "scrapes": 0}

    def scrape() -> bytes:
        state["scrapes"] += 1
        return SECRET_SCRAPE
    server = OpsServer("127.0.0.1:0", token=ScrapeToken(TOKEN), scrape=scrape, ready=lambda: state["ready"],
                       ssl_context=None)
    return server, state


def test_metrics_needs_the_token_and_says_nothing_else_without_it():
    async def main():
        server, state = serve()
        await server.start()
        try:
            for auth in ((), ("Authorization: Bearer wrong",), (f"Authorization: Bearer {TOKEN}x",),
                         (f"Authorization: Basic {TOKEN}",), (f"Authorization: {TOKEN}",),
                         (f"Authorization: Bearer {TOKEN[:-1]}",)):
                status, headers, body = await exchange(server.port, get("/metrics", *auth))
                assert status == 401, auth
                assert b"maillage" not in body and len(body) < 20
                assert headers["www-authenticate"].startswith("Bearer")
            assert state["scrapes"] == 0
            status, headers, body = await exchange(server.port, get("/metrics", f"Authorization: Bearer {TOKEN}"))
            assert status == 200 and body == SECRET_SCRAPE
            assert headers["content-type"].startswith("text/plain; version=0.0.4")
        finally:
            await server.stop()
    asyncio.run(main())


def test_probes_answer_a_word_and_readiness_follows_the_node():
    async def main():
        server, state = serve(ready=False)
        await server.start()
        try:
            assert (await exchange(server.port, get("/livez")))[::2] == (200, b"ok\n")
            assert (await exchange(server.port, get("/readyz")))[::2] == (503, b"not ready\n")
            state["ready"] = True
            assert (await exchange(server.port, get("/readyz")))[::2] == (200, b"ready\n")
        finally:
            await server.stop()
    asyncio.run(main())


def test_anything_else_gets_a_short_4xx_never_a_traceback():
    async def main():
        server, state = serve()
        await server.start()
        try:
            auth = f"Authorization: Bearer {TOKEN}"
            cases = [
                (get("/"), 404), (get("/metrics/../etc/passwd", auth), 404), (get("/debug", auth), 404),
                (get("/metrics", auth, method="POST"), 405), (get("/livez", method="DELETE"), 405),
                (get("/metrics", auth, body=b"x" * 100), 413),
                (get("/" + "a" * 10000), 400),                       # request line over the bound
                (get("/livez", "X-Big: " + "b" * 10000), 400),       # a header over the bound
                (b"\x16\x03\x01garbage\r\n\r\n", 400),               # not HTTP at all
            ]
            for request, expected in cases:
                status, _, body = await exchange(server.port, request)
                assert status == expected, (request[:40], status, body[:200])
                assert b"Traceback" not in body and b"maillage_secret" not in body and len(body) < 300
            assert state["scrapes"] == 0
        finally:
            await server.stop()
    asyncio.run(main())


def test_a_scrape_token_is_long_enough_and_read_from_its_file(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        ScrapeToken("short")
    with pytest.raises(ValueError, match="at least"):
        ScrapeToken("x" * (MIN_TOKEN_LENGTH - 1))
    with pytest.raises(ValueError, match="cannot be read"):
        ScrapeToken.from_file(tmp_path / "missing.token")
    (tmp_path / "metrics.token").write_text(TOKEN + "\n")
    token = ScrapeToken.from_file(tmp_path / "metrics.token")
    assert token.admits(f"Bearer {TOKEN}") and not token.admits(None) and not token.admits(f"Bearer {TOKEN} ")


def test_a_node_without_a_usable_scrape_token_stops_before_it_starts(tmp_path, capsys):
    from maillage.cli.main import main

    base = ["node", "run", "--id", "n1", "--data-dir", str(tmp_path / "data"), "--trust-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--ops-listen", "127.0.0.1:0"])
    assert exit_.value.code == 1
    assert "metrics.token: cannot be read" in capsys.readouterr().err
    (tmp_path / "short.token").write_text("abc\n")
    with pytest.raises(SystemExit):
        main([*base, "--ops-listen", "127.0.0.1:0", "--ops-token-file", str(tmp_path / "short.token")])
    assert "at least 32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--ops-token-file", str(tmp_path / "short.token")])
    assert "only with --ops-listen" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_connections_over_the_cap_are_closed_as_they_arrive(monkeypatch):
    from maillage.node.metrics import ops

    monkeypatch.setattr(ops, "MAX_CONNECTIONS", 3)

    async def main():
        server, _ = serve()
        await server.start()
        held = []
        try:
            for _ in range(3):  # idle connections that never send a request
                held.append(await asyncio.open_connection("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(get("/livez"))
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed without an answer
            writer.close()
            assert server.refused == 1
            for _, w in held:
                w.close()
            status = None
            async with asyncio.timeout(5):
                while status != 200:
                    try:
                        status = (await exchange(server.port, get("/livez")))[0]
                    except (ConnectionError, IndexError, ValueError):
                        await asyncio.sleep(0.05)
        finally:
            await server.stop()
    asyncio.run(main())
