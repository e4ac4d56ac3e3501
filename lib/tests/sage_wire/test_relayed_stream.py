"""RelayedStream: what it sends, chunk by chunk, and how a LastChunk ends the response."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from sage_wire.asgi import LastChunk, RelayedStream

pytestmark = pytest.mark.asyncio


async def _relayed(chunks: AsyncIterator[bytes]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client never leaves
        return {}

    async def send(message: Message) -> None:
        sent.append(message)

    await RelayedStream(chunks, 200, [(b"content-type", b"text/event-stream")])({"type": "http"}, receive, send)
    return sent


def _bodies(sent: list[Message]) -> list[tuple[bytes, bool]]:
    return [(message["body"], message["more_body"]) for message in sent[1:]]


async def test_each_chunk_goes_as_it_comes_and_an_empty_end_follows() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    sent = await _relayed(chunks())
    assert sent[0]["type"] == "http.response.start"
    assert _bodies(sent) == [(b"data: one\n\n", True), (b"data: two\n\n", True), (b"", False)]


async def test_a_last_chunk_ends_the_response_with_it() -> None:
    finished: list[bool] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"data: one\n\n"
            yield LastChunk(b"data: [DONE]\n\n")
        finally:
            finished.append(True)

    sent = await _relayed(chunks())
    assert _bodies(sent) == [(b"data: one\n\n", True), (b"data: [DONE]\n\n", False)]
    assert finished == [True]  # the source still ran to its end


async def test_nothing_may_follow_a_last_chunk() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield LastChunk(b"data: [DONE]\n\n")
        yield b"more"

    with pytest.raises(RuntimeError, match="after its LastChunk"):
        await _relayed(chunks())
