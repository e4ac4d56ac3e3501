"""One request on an HttpServerProtocol connection: the ASGI `receive` and `send` its app gets,
and how the response is framed and written (see sage_runtime.http_server)."""

from __future__ import annotations

import asyncio
import http
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Message

    from sage_runtime.http_server import HttpServerProtocol

log = logging.getLogger("uvicorn.error")

_CONTROL_BYTES = bytes([*range(0x09), *range(0x0A, 0x20), 0x7F])
"""Control characters, tab aside: a framed header line holds none but its own CR LF. Deleting them
with `bytes.translate` and comparing lengths is a third of a regular expression's search."""
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_NO_BODY_STATUS = frozenset({204, 304})
_END_OF_CHUNKS = b"0\r\n\r\n"


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


class _DefaultHeaders:
    """The server's own headers (uvicorn renews the list, with its date, every second), framed
    once per list rather than once per response."""

    source: object = None
    framed = b""

    @classmethod
    def of(cls, headers: list[tuple[bytes, bytes]]) -> bytes:
        if headers is not cls.source:
            cls.framed = b"".join(b"%s: %s\r\n" % pair for pair in headers)
            cls.source = headers
        return cls.framed


def frame_head(
    status: int, headers: Iterable[tuple[bytes, bytes]], default: list[tuple[bytes, bytes]]
) -> tuple[bytes, int | None, bool, bool]:
    """The head of a response, and what it says about framing: (head without its final CRLF,
    content-length or None, chunked, `Connection: close`). Raises RuntimeError for a header that
    would break the head (a control character, CR or LF in a name or value)."""
    lines = [b""]
    length: int | None = None
    chunked = False
    close = False
    for name, value in headers:
        lower = name.lower()
        if lower in _FRAMING:
            if lower == b"content-length":
                if length is None and not chunked:
                    length = int(value)
            elif lower == b"transfer-encoding":
                if value.lower() == b"chunked":
                    chunked, length = True, None
            elif b"close" in (token.strip() for token in value.lower().split(b",")):
                close = True
        lines.append(b"%s: %s\r\n" % (lower, value))
    block = b"".join(lines)
    if len(block) - len(block.translate(None, _CONTROL_BYTES)) != 2 * (len(lines) - 1):
        raise RuntimeError("Invalid HTTP header name or value.")
    status_line = STATUS_LINES.get(status) or _status_line(status)
    return status_line + _DefaultHeaders.of(default) + block, length, chunked, close


class HttpExchange:
    __slots__ = (
        "body",
        "body_size",
        "chunked",
        "complete",
        "connection",
        "delivered_last",
        "disconnected",
        "expect_continue",
        "head",
        "head_only",
        "keep_alive",
        "more_body",
        "remaining",
        "scope",
        "started",
        "waiter",
    )

    def __init__(
        self, connection: HttpServerProtocol, scope: dict[str, Any], *, keep_alive: bool, expect_continue: bool
    ) -> None:
        self.connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = True
        self.delivered_last = False
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.started = False
        self.complete = False
        self.head: bytes | None = None
        """The response's head, held until the first body bytes (or the end of the loop's turn)."""
        self.head_only = False
        self.chunked = False
        self.remaining = 0

    # --- from the connection ------------------------------------------------------------------
    def take_body(self, chunk: bytes) -> int:
        """A piece of the request body; returns the bytes now buffered."""
        if self.complete or self.disconnected:
            return 0
        self.body.append(chunk)
        self.body_size += len(chunk)
        self._wake()
        return self.body_size

    def body_complete(self) -> None:
        self.more_body = False
        self._wake()

    def client_left(self) -> None:
        if not self.complete:
            self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the app ------------------------------------------------------------------------------
    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException:
            log.exception("Exception in ASGI application")
            if not self.started:
                await self._send_500()
            else:
                self.connection.transport.close()
        else:
            if not self.started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.connection.transport.close()

    async def _send_500(self) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if not self.connection.transport.is_closing():
                self.connection.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not (self.disconnected or self.complete):
            if self.body or (not self.more_body and not self.delivered_last):
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.body_size = 0
                self.delivered_last = not self.more_body
                self.connection.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            self.connection.resume_reading()
            self.waiter = self.connection.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        connection = self.connection
        if connection.write_paused and not self.disconnected:
            await connection.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self._start(message["status"], message.get("headers", ()))
        elif self.complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        elif kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        else:
            more_body = message.get("more_body", False)
            self._write(self._frame(message.get("body", b""), more_body))
            if not more_body:
                self._finish()

    def _start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.expect_continue = False
        connection = self.connection
        head, length, chunked, close = frame_head(status, headers, connection.server_state.default_headers)
        if close:
            self.keep_alive = False
        elif not self.keep_alive:
            head += b"connection: close\r\n"
        self.head_only = self.scope["method"] == "HEAD"
        if length is not None:
            self.remaining = length
        elif not chunked and not self.head_only and status not in _NO_BODY_STATUS:
            chunked = True
            head += b"transfer-encoding: chunked\r\n"
        self.chunked = chunked
        self.head = head + b"\r\n"
        connection.loop.call_soon(self._flush_head)

    def _frame(self, body: bytes, more_body: bool) -> bytes:
        if self.head_only:
            return b""
        if self.chunked:
            if not body:
                return b"" if more_body else _END_OF_CHUNKS
            return b"%x\r\n%s\r\n%s" % (len(body), body, b"" if more_body else _END_OF_CHUNKS)
        self.remaining -= len(body)
        if self.remaining < 0:
            raise RuntimeError("Response content longer than Content-Length")
        if not more_body and self.remaining:
            raise RuntimeError("Response content shorter than Content-Length")
        return body

    def _write(self, data: bytes) -> None:
        transport = self.connection.transport
        head = self.head
        if head is None:
            if data:
                transport.write(data)
        elif not transport.is_closing():
            self.head = None
            if data:
                transport.writelines((head, data))  # one vectored send
            else:
                transport.write(head)

    def _flush_head(self) -> None:
        """End of the turn that started the response: a head still held goes out alone."""
        if self.head is not None and not self.disconnected:
            self._write(b"")

    def _finish(self) -> None:
        self.complete = True
        self._wake()
        self.connection.response_complete(self)
