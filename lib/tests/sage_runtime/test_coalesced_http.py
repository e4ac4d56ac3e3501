"""uvicorn on the coalescing protocol, served on a real socket: what a client receives is the same
HTTP/1.1, with each response's head in the same send as its first body bytes (sends counted at the
socket's transport, under the coalescing layer), and nothing waiting for what comes later."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from sage_runtime.coalesced_http import CoalescingHttpToolsProtocol

pytestmark = pytest.mark.asyncio


class SendCounter(asyncio.Transport):
    """The socket's own transport, with its sends counted (what the coalescing layer hands down)."""

    sends: ClassVar[list[bytes]] = []

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport

    def write(self, data: Any) -> None:
        SendCounter.sends.append(bytes(data))
        self._transport.write(data)

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        parts = [bytes(data) for data in list_of_data]
        SendCounter.sends.append(b"".join(parts))
        self._transport.writelines(parts)

    def __getattribute__(self, name: str) -> Any:
        if name in {"write", "writelines", "_transport", "__class__"}:
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_transport"), name)


class CountedProtocol(CoalescingHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(SendCounter(transport))


LARGE = bytes(range(256)) * 1024
LARGE = bytes(range(256)) * 1024
released = asyncio.Event()
"""Set by the test once the client has the slow stream's first chunk (made anew per test)."""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    while (await receive()).get("more_body"):
        pass
    if path == "/plain":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
    elif path == "/stream":  # every chunk at once: the whole stream is there
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for word in (b"one", b"two", b"three"):
            await send({"type": "http.response.body", "body": b"data: " + word + b"\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":  # the second chunk only once the client has the first
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        await released.wait()
        await send({"type": "http.response.body", "body": b"data: second\n\n"})
    elif path == "/late":  # the head, and the body only once the client has the head
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await released.wait()
        await send({"type": "http.response.body", "body": b"late"})
    elif path == "/large":
        length = [(b"content-length", str(len(LARGE)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": LARGE[: len(LARGE) // 2], "more_body": True})
        await send({"type": "http.response.body", "body": LARGE[len(LARGE) // 2 :]})


@pytest.fixture
async def server() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, http=CountedProtocol, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    while not running.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    global released  # noqa: PLW0603 - one per test's event loop
    SendCounter.sends.clear()
    released = asyncio.Event()
    try:
        yield port
    finally:
        running.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


def _request(path: str, *, close: bool = False) -> bytes:
    connection = b"connection: close\r\n" if close else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nhost: test\r\n" + connection + b"\r\n"


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response's head and its body (content-length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = head.lower()
    if b"content-length:" in headers:
        length = int(headers.split(b"content-length:")[1].split(b"\r\n")[0])
        return head, await reader.readexactly(length)
    body = b""
    while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readexactly(2)
    return head, body


async def test_a_response_leaves_in_one_send(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request("/plain"))
    head, body = await _response(reader)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"hello"
    assert len(SendCounter.sends) == 1
    assert SendCounter.sends[0].startswith(b"HTTP/1.1 200")
    assert SendCounter.sends[0].endswith(b"hello")
    writer.close()


async def test_a_streams_head_rides_with_its_first_chunk(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request("/stream"))
    _, body = await _response(reader)
    assert body == b"data: one\n\ndata: two\n\ndata: three\n\n"
    assert SendCounter.sends[0].startswith(b"HTTP/1.1 200")
    assert SendCounter.sends[0].endswith(b"data: one\n\n\r\n")
    assert len(SendCounter.sends) == 4  # then each chunk as it came, and the terminator
    writer.close()


async def test_a_head_without_a_body_yet_is_not_held_back(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request("/late"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # while the app waits
    assert head.startswith(b"HTTP/1.1 200")
    released.set()
    assert await reader.readexactly(4) == b"late"
    assert len(SendCounter.sends) == 2
    writer.close()


async def test_a_chunk_goes_out_without_waiting_for_the_next(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request("/slow"))
    await reader.readuntil(b"\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"data: first\n\n\r\n"), 5)  # while the app waits
    assert first.endswith(b"data: first\n\n\r\n")
    released.set()
    assert (await reader.readuntil(b"0\r\n\r\n")).startswith(b"e\r\ndata: second")
    assert len(SendCounter.sends) == 2  # head + first chunk, then the second chunk + terminator
    writer.close()


async def test_keep_alive_pipelining_and_close(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request("/plain") + _request("/stream") + _request("/plain", close=True))
    answers = [await _response(reader) for _ in range(3)]
    assert [body for _, body in answers] == [b"hello", b"data: one\n\ndata: two\n\ndata: three\n\n", b"hello"]
    assert b"connection: close" in answers[2][0].lower()
    assert await reader.read() == b""  # closed by the server, after what it held went out
    writer.close()


async def test_a_large_body_goes_down_as_it_is(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request("/large"))
    _, body = await _response(reader)
    assert body == LARGE
    assert [len(sent) for sent in SendCounter.sends[1:]] == [len(LARGE) // 2]
    writer.close()
