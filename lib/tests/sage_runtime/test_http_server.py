"""uvicorn's server on SAGE's HTTP/1.1 protocol, served on a real socket: what a client receives is
HTTP/1.1 as uvicorn's own protocol sends it, with each response's head in the same send as its first
body bytes (sends counted at the socket's transport), and nothing waiting for what comes later."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar, cast

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from sage_runtime.http_server import HttpServerProtocol

pytestmark = pytest.mark.asyncio


class SendCounter(asyncio.Transport):
    """The socket's own transport, with its sends counted."""

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


class CountedProtocol(HttpServerProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(SendCounter(cast("asyncio.Transport", transport)))


LARGE = bytes(range(256)) * 1024
LARGE = bytes(range(256)) * 1024
released = asyncio.Event()
"""Set by the test once the client has the slow stream's first chunk (made anew per test)."""


seen: list[str] = []
"""What the app saw that a client cannot: the message that told it the client left."""


async def _read_all(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def app(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0912 - one route per branch
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = await _read_all(receive)
    if path == "/echo":
        headers = [(b"content-length", str(len(body)).encode()), (b"x-query", scope["query_string"])]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif path == "/disconnect":  # waits for the client to leave
        seen.append((await receive())["type"])
    elif path == "/fail-before":
        raise RuntimeError("before the response")
    elif path == "/fail-after":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise RuntimeError("in the middle of the response")
    elif path == "/nothing":
        return
    elif path == "/bad-header":
        injected = [(b"x-value", b"a\r\nx-injected: 1"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": injected})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/plain":
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


@contextlib.asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, http=CountedProtocol, log_level="warning", lifespan="off", **settings)
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    while not running.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    global released  # noqa: PLW0603 - one per test's event loop
    SendCounter.sends.clear()
    seen.clear()
    released = asyncio.Event()
    try:
        yield port
    finally:
        running.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


@pytest.fixture
async def server() -> AsyncIterator[int]:
    async with serving() as port:
        yield port


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


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (after whatever it still sent)."""
    await asyncio.wait_for(reader.read(), 5)
    return reader.at_eof()


async def test_a_body_sent_in_pieces_and_chunked_arrives_whole(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"POST /echo?a=1 HTTP/1.1\r\nhost: test\r\ncontent-length: 11\r\n\r\nhello")
    await writer.drain()
    await asyncio.sleep(0.05)  # the app is waiting for the rest
    writer.write(b" world")
    head, body = await _response(reader)
    assert body == b"hello world"
    assert b"x-query: a=1" in head
    chunked = b"transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    writer.write(b"POST /echo HTTP/1.1\r\nhost: test\r\n" + chunked)
    assert (await _response(reader))[1] == b"abcde"
    writer.close()


async def test_a_large_body_is_read_with_flow_control(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: %d\r\n\r\n" % len(LARGE * 4) + LARGE * 4)
    _, body = await _response(reader)
    assert body == LARGE * 4
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    assert (await _response(reader))[1] == b"ok"
    writer.close()


async def test_head_has_the_length_and_no_body(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"HEAD /plain HTTP/1.1\r\nhost: test\r\n\r\n" + _request("/plain"))
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: 5" in head
    assert (await _response(reader))[1] == b"hello"  # the next response follows the head at once
    writer.close()


async def test_http_1_0_is_answered_and_closed(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET /plain HTTP/1.0\r\n\r\n")
    head, body = await _response(reader)
    assert body == b"hello"
    assert b"connection: close" in head
    assert await _closed(reader)
    writer.close()


async def test_a_request_the_parser_refuses_gets_400_and_close(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    head, body = await _response(reader)
    assert head.startswith(b"HTTP/1.1 400")
    assert body == b"Invalid HTTP request received."
    assert await _closed(reader)
    writer.close()


@pytest.mark.parametrize("path", ["/fail-before", "/nothing"])
async def test_an_app_that_fails_before_answering_gets_a_500(server: int, path: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request(path))
    head, body = await _response(reader)
    assert head.startswith(b"HTTP/1.1 500")
    assert body == b"Internal Server Error"
    assert await _closed(reader)
    writer.close()


@pytest.mark.parametrize("path", ["/fail-after", "/bad-header"])
async def test_a_response_that_cannot_be_completed_closes_the_connection(server: int, path: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request(path))
    received = await asyncio.wait_for(reader.read(), 5)
    assert reader.at_eof()
    assert b"x-injected" not in received  # a header that would break the head is never sent
    if path == "/fail-after":
        assert received.endswith(b"\r\n\r\n12345")  # what was sent, then the close: never complete
    else:
        assert received == b""
    writer.close()


async def test_the_app_hears_when_the_client_leaves(server: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(_request("/disconnect"))
    await writer.drain()
    await asyncio.sleep(0.05)  # the app is waiting
    writer.close()
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen == ["http.disconnect"]


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async with serving(timeout_keep_alive=1) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request("/late"))  # busy for longer than the timeout
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(1.5)
        released.set()
        assert await reader.readexactly(4) == b"late"  # not cut while busy
        writer.write(_request("/plain"))
        assert (await _response(reader))[1] == b"hello"
        assert await _closed(reader)  # then idle: closed
        writer.close()


async def test_an_upgrade_is_answered_as_plain_http_and_closed(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    upgrade = b"connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
    writer.write(b"GET /plain HTTP/1.1\r\nhost: test\r\n" + upgrade + b"\r\n")
    head, body = await _response(reader)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"hello"
    assert await _closed(reader)
    writer.close()
