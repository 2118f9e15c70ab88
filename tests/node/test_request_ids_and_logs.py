"""Request ids and the node's log formats: one id per request, passed to peers, safe to log."""

from __future__ import annotations

import asyncio
import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from maillage.node.runtime import request_ids
from maillage.node.runtime.logs import JsonFormatter, RequestIdFilter


def test_a_plain_token_from_the_caller_is_kept_and_anything_else_replaced():
    assert request_ids.adopt("ABC-123_x.y") == "ABC-123_x.y"
    assert request_ids.adopt(b"FROM-PEER") == "FROM-PEER"
    for hostile in ("", None, "a" * 65, "line\nbreak", "{\"json\": 1}", "dossier/secret key"):
        got = request_ids.adopt(hostile)
        assert got != hostile and len(got) == 16


@given(st.text(max_size=200))
def test_whatever_a_caller_sends_the_id_is_a_short_plain_token(given_id):
    got = request_ids.adopt(given_id)
    assert 1 <= len(got) <= 64 and all(c.isascii() and (c.isalnum() or c in "._-") for c in got)


def test_an_id_lives_in_its_request_task_and_goes_to_peers_from_there():
    async def request(name: str) -> tuple[str, tuple]:
        request_ids.adopt(name)
        await asyncio.sleep(0)
        return request_ids.current(), request_ids.outgoing()

    async def main():
        a, b = await asyncio.gather(request("REQ-A"), request("REQ-B"))
        return a, b, request_ids.outgoing()
    request_ids.REQUEST_ID.set("")
    a, b, outside = asyncio.run(main())
    assert a == ("REQ-A", ((request_ids.METADATA_KEY, "REQ-A"),))
    assert b == ("REQ-B", ((request_ids.METADATA_KEY, "REQ-B"),))
    assert outside == ()  # no request, nothing passed on


def test_json_lines_carry_node_and_request_id_and_parse_back():
    record = logging.LogRecord("maillage.node.x", logging.WARNING, __file__, 1, 'quote " and\nnewline %s', ("é",),
                               None)
    request_ids.adopt("REQ-JSON")
    assert RequestIdFilter("paris-1").filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["node"] == "paris-1" and entry["request_id"] == "REQ-JSON" and entry["level"] == "WARNING"
    assert entry["message"] == 'quote " and\nnewline é' and entry["time"].endswith("Z")
