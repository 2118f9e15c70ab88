"""The gate hands its admission the bytes a request signature covers, before parsing anything, and
no client stream is held open unproven (in process: the guarded handlers with a recording admit)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from maillage.node.rpc import gate
from maillage.node.rpc.gate import REFUSAL_PREFIXES


class Aborted(Exception):
    pass


class Context:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def set_trailing_metadata(self, md) -> None:
        pass

    def invocation_metadata(self):
        return ()

    async def abort(self, code, details) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


def _recording() -> tuple[list[bytes], object]:
    seen: list[bytes] = []

    async def admit(context, body: bytes) -> None:
        seen.append(body)
    return seen, admit


def test_a_unary_request_is_admitted_on_its_raw_bytes() -> None:
    seen, admit = _recording()

    async def handler(request, context):
        return request

    guarded = gate._guarded(grpc.unary_unary_rpc_method_handler(handler, request_deserializer=bytes.upper), admit)
    reply = asyncio.run(guarded.unary_unary(b"raw request", Context()))
    assert seen == [b"raw request"] and reply == b"RAW REQUEST"


@pytest.mark.parametrize("messages", [[b"header", b"data", b"trailer"], [b"header"], []])
def test_a_client_stream_is_admitted_on_its_first_message_which_the_handler_still_gets(messages) -> None:
    seen, admit = _recording()

    async def handler(requests, context):
        return [m async for m in requests]

    async def stream():
        for m in messages:
            yield m

    guarded = gate._guarded(grpc.stream_unary_rpc_method_handler(handler), admit)
    got = asyncio.run(guarded.stream_unary(stream(), Context()))
    assert got == messages
    assert seen == [messages[0] if messages else b""]


def test_a_stream_whose_first_message_does_not_come_is_refused_in_bounded_time(monkeypatch) -> None:
    monkeypatch.setattr(gate, "FIRST_MESSAGE_WAIT", 0.05)
    seen, admit = _recording()

    async def handler(requests, context):
        raise AssertionError("an unproven stream reached the handler")

    async def silent():
        await asyncio.sleep(3600)
        yield b"never"

    guarded = gate._guarded(grpc.stream_unary_rpc_method_handler(handler), admit)
    context = Context()
    with pytest.raises(Aborted):
        asyncio.run(asyncio.wait_for(guarded.stream_unary(silent(), context), 5))
    assert context.code == grpc.StatusCode.UNAUTHENTICATED and seen == []
    assert context.details.startswith(REFUSAL_PREFIXES[grpc.StatusCode.UNAUTHENTICATED])
    assert "first message" in context.details
