"""The upstream client against real sockets: replicas played by small asyncio servers that answer
in exactly the ways that matter (keep-alive, chunked, cut off, silent, closing as a request comes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from sage_gateway.upstream import (
    BrokenResponse,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    ReadTimeout,
    UpstreamPool,
)
from sage_gateway.upstream.connection import HIGH_WATER
from sage_gateway.upstream.pool import parse_origin
from sage_harness.net import free_port

Answer = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[bool]]
"""(request number on this connection, request body, writer) -> keep the connection open."""


@dataclass
class Replica:
    """A replica that reads each request (head + content-length body) and lets `answer` reply."""

    answer: Answer
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                number += 1
                if not await self.answer(number, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def replica(answer: Answer) -> AsyncIterator[Replica]:
    server_side = Replica(answer)
    server = await asyncio.start_server(server_side._serve, "127.0.0.1", 0)
    server_side.port = server.sockets[0].getsockname()[1]
    try:
        yield server_side
    finally:
        server.close()


def pool(**overrides: float) -> UpstreamPool:
    settings: dict[str, float] = {"connect_timeout": 2, "read_timeout": 10, "pool_timeout": 5, "max_connections": 8}
    settings.update(overrides)
    return UpstreamPool(
        connect_timeout=settings["connect_timeout"],
        read_timeout=settings["read_timeout"],
        pool_timeout=settings["pool_timeout"],
        max_connections=int(settings["max_connections"]),
    )


def fixed(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s" % (
        extra,
        len(body),
        body,
    )


async def echo(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(fixed(b'{"n":%d,"echo":%s}' % (number, body)))
    await writer.drain()
    return True


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with replica(echo) as upstream:
        client = pool()
        for expected in (1, 2, 3):
            response = await client.post(upstream.url, "/v1/x", b'"hi"', [(b"content-type", b"application/json")])
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"n":%d,"echo":"hi"}' % expected
        assert upstream.connections == 1
        head = upstream.requests[0].split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"post /v1/x http/1.1")
        assert f"host: 127.0.0.1:{upstream.port}".encode() in head
        assert b"content-length: 4" in head
        await client.close()


async def test_headers_arrive_as_bytes_with_lower_case_names_and_decode_on_demand() -> None:
    async def answer(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(fixed(b"{}", b"X-Trace: a\r\nSet-Cookie: s=1\r\nSet-Cookie: t=2\r\n"))
        await writer.drain()
        return True

    async with replica(answer) as upstream:
        client = pool()
        response = await client.post(upstream.url, "/v1/x", b"{}", [])
        assert response.raw_headers == [
            (b"content-type", b"application/json"),
            (b"x-trace", b"a"),
            (b"set-cookie", b"s=1"),
            (b"set-cookie", b"t=2"),
            (b"content-length", b"2"),
        ]
        assert response.header(b"set-cookie") == b"s=1"
        assert response.header(b"x-absent") is None
        assert response.headers["set-cookie"] == "s=1, t=2"
        assert await response.read() == b"{}"
        await client.close()


async def test_a_chunked_stream_arrives_piece_by_piece() -> None:
    release = asyncio.Event()

    async def stream(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"7\r\ndata: 1\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
        await writer.drain()
        return True

    async with replica(stream) as upstream:
        client = pool()
        response = await client.post(upstream.url, "/v1/s", b"{}", [])
        pieces = response.chunks()
        assert await anext(pieces) == b"data: 1"  # before the replica sent the rest
        release.set()
        assert [piece async for piece in pieces] == [b"data: 2"]
        assert response.complete
        # the connection went back to the pool once the stream ended
        again = await client.post(upstream.url, "/v1/s", b"{}", [])
        release.set()
        assert await again.read() == b"data: 1data: 2"
        assert upstream.connections == 1
        await client.close()


async def test_a_kept_alive_connection_the_replica_dropped_is_replaced_once() -> None:
    async def drop_the_second(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if number == 2:
            return False  # closes without answering, as a replica whose keep-alive ran out
        return await echo(number, body, writer)

    async with replica(drop_the_second) as upstream:
        client = pool()
        assert (await client.post(upstream.url, "/", b"1", [])).status == 200
        second = await client.post(upstream.url, "/", b"2", [])
        assert await second.read() == b'{"n":1,"echo":2}'  # answered on a new connection
        assert upstream.connections == 2
        await client.close()


async def test_a_new_connection_closed_before_an_answer_is_disconnected() -> None:
    async def hang_up(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with replica(hang_up) as upstream:
        client = pool()
        with pytest.raises(Disconnected):
            await client.post(upstream.url, "/", b"{}", [])
        assert upstream.connections == 1  # never sent twice: nothing says the replica did no work
        assert client.open_connections == 0


async def test_a_refused_connection_fails_to_connect() -> None:
    client = pool()
    with pytest.raises(ConnectFailed, match=r"connecting to http://127\.0\.0\.1"):
        await client.post(f"http://127.0.0.1:{free_port()}", "/", b"{}", [])
    assert client.open_connections == 0


async def test_a_silent_replica_times_out_and_its_connection_is_closed() -> None:
    async def silent(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with replica(silent) as upstream:
        client = pool(read_timeout=0.2)
        with pytest.raises(ReadTimeout):
            await client.post(upstream.url, "/", b"{}", [])
        assert client.open_connections == 0


async def test_the_read_timeout_counts_from_each_request_on_a_kept_alive_connection() -> None:
    async def slow_second(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if number == 2:
            await asyncio.sleep(0.25)  # within the timeout of its own request, past the first's
        elif number == 3:
            await asyncio.sleep(30)
        return await echo(number, body, writer)

    async with replica(slow_second) as upstream:
        client = pool(read_timeout=0.4)
        assert (await client.post(upstream.url, "/", b"1", [])).status == 200
        await asyncio.sleep(0.25)
        second = await client.post(upstream.url, "/", b"2", [])
        assert await second.read() == b'{"n":2,"echo":2}'
        with pytest.raises(ReadTimeout):
            await client.post(upstream.url, "/", b"3", [])
        assert upstream.connections == 1
        assert client.open_connections == 0


async def test_chunks_read_before_broken_framing_are_delivered_then_the_error() -> None:
    async def garbled(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        writer.write(head + b"7\r\ndata: 1\r\n7\r\ndata: 2\r\nzz\r\nnot a chunk\r\n")
        await writer.drain()
        return True

    async with replica(garbled) as upstream:
        client = pool()
        response = await client.post(upstream.url, "/v1/s", b"{}", [])
        assert await response.next_chunk() == b"data: 1data: 2"  # the whole read, in one piece
        with pytest.raises(BrokenResponse, match="not valid HTTP"):
            await response.next_chunk()
        assert client.open_connections == 0
        await client.close()


async def test_an_answer_cut_off_mid_body_is_broken() -> None:
    async def cut(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        return False

    async with replica(cut) as upstream:
        client = pool()
        response = await client.post(upstream.url, "/", b"{}", [])
        with pytest.raises(BrokenResponse):
            await response.read()
        assert client.open_connections == 0


async def test_a_body_that_ends_with_the_connection_is_read_whole() -> None:
    async def until_close(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()
        return False

    async with replica(until_close) as upstream:
        client = pool()
        response = await client.post(upstream.url, "/", b"{}", [])
        assert await response.read() == b"all of it"
        assert client.open_connections == 0  # not kept: the replica said close


async def test_a_large_body_read_slowly_arrives_whole() -> None:
    payload = bytes(range(256)) * (4 * HIGH_WATER // 256)

    async def large(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload))
        for start in range(0, len(payload), 65536):
            writer.write(payload[start : start + 65536])
            await writer.drain()
        return True

    async with replica(large) as upstream:
        client = pool()
        response = await client.post(upstream.url, "/", b"{}", [])
        received = bytearray()
        async for piece in response.chunks():
            assert len(piece) <= 2 * HIGH_WATER + 65536  # reading paused: the buffer stayed bounded
            received += piece
            await asyncio.sleep(0.01)
        assert bytes(received) == payload
        await client.close()


async def test_closing_a_response_mid_body_drops_its_connection() -> None:
    async def endless(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):
                writer.write(b"5\r\nchunk\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        return False

    async with replica(endless) as upstream:
        client = pool()
        response = await client.post(upstream.url, "/", b"{}", [])
        assert await anext(response.chunks())
        response.close()
        with pytest.raises(BrokenResponse):
            await response.read()
        await asyncio.sleep(0.05)
        assert client.open_connections == 0
        assert (await client.post(upstream.url, "/", b"{}", [])).status == 200
        assert upstream.connections == 2  # the abandoned one was never reused
        await client.close()


async def test_a_full_pool_makes_a_request_wait_then_gives_up() -> None:
    release = asyncio.Event()

    async def slow(number: int, body: bytes, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        return await echo(number, body, writer)

    async with replica(slow) as upstream:
        client = pool(max_connections=1, pool_timeout=0.3)
        first = asyncio.create_task(client.post(upstream.url, "/", b"1", []))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectTimeout, match="no free connection"):
            await client.post(upstream.url, "/", b"2", [])
        waiting = asyncio.create_task(client.post(upstream.url, "/", b"3", []))
        await asyncio.sleep(0.05)
        release.set()
        assert await (await first).read() == b'{"n":1,"echo":1}'
        assert await (await waiting).read() == b'{"n":2,"echo":3}'  # the freed connection, reused
        assert upstream.connections == 1
        await client.close()


def test_replica_urls_are_parsed_once_into_origins() -> None:
    origin = parse_origin("http://10.0.0.7:8000")
    assert (origin.host, origin.port, origin.tls, origin.host_header) == ("10.0.0.7", 8000, False, "10.0.0.7:8000")
    assert parse_origin("https://engine.example").port == 443
    with pytest.raises(ConnectFailed, match="must be http"):
        parse_origin("unix:///tmp/socket")
