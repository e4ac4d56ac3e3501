"""One keep-alive HTTP/1.1 connection to a replica, and the response it is receiving.

An asyncio protocol with httptools' response parser (C): a request goes out in one write, the
parser's callbacks fill an `UpstreamResponse` (the body bytes of one read in one piece), and once
the response has ended on the wire the connection goes back to its pool, whether or not the
consumer has read the buffered body yet.
Reading is paused while a consumer (a slow client) leaves more than `HIGH_WATER` bytes unread.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol, cast

import httptools

from sage_gateway.headers import plain_headers
from sage_gateway.upstream.errors import BrokenResponse, Disconnected, ReadTimeout, UpstreamError
from sage_wire.media import RawHeaders

HIGH_WATER = 256 * 1024
"""Unread bytes of a response at which the connection stops reading from the replica."""
LOW_WATER = 64 * 1024
"""...and resumes once the consumer has read the buffer down to this."""

_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamResponse:
    """A response whose status line and headers arrived; the body arrives behind them.

    `raw_headers` are the headers as they came, as bytes, names lower-case (what the proxy passes
    on without decoding them); `header()` looks one up, `headers` is a decoded dict of them (a
    repeated header's values joined with ", "). Read the body with `read()`, `chunks()` or
    `next_chunk()` until None, once; `close()` abandons what is left of it."""

    __slots__ = (
        "_chunks",
        "_complete",
        "_connection",
        "_decoded",
        "_error",
        "_unread",
        "_waiter",
        "raw_headers",
        "status",
    )

    def __init__(self, connection: UpstreamConnection, status: int, raw_headers: RawHeaders) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self._decoded: dict[str, str] | None = None
        self._connection = connection
        self._chunks: deque[bytes] = deque()
        self._unread = 0
        self._complete = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None

    # --- fed by the connection --------------------------------------------------------------
    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._unread += len(chunk)
        if self._unread > HIGH_WATER:
            self._connection.pause_reading()
        self._wake()

    def _end(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if not self._complete and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- read by the consumer ---------------------------------------------------------------
    def header(self, name: bytes) -> bytes | None:
        """The first value of the header `name` (lower-case), None when absent."""
        for key, value in self.raw_headers:
            if key == name:
                return value
        return None

    @property
    def headers(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = plain_headers(self.raw_headers)
        return self._decoded

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def drained(self) -> bool:
        """The body ended and every byte of it was read: `next_chunk` would return None."""
        return self._complete and not self._chunks

    @property
    def unbroken(self) -> bool:
        """Still arriving, with nothing gone wrong so far."""
        return not self._complete and self._error is None

    async def next_chunk(self) -> bytes | None:
        """Every byte that arrived since the last call (waiting for some), or None at the end."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._unread = 0
                self._connection.resume_reading()
                return chunk
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._waiter = self._connection.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read(self) -> bytes:
        """The whole body."""
        parts: list[bytes] = []
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each step yields every byte that arrived since the last."""
        while (chunk := await self.next_chunk()) is not None:
            yield chunk

    def close(self) -> None:
        """Done with the response: a body still arriving is abandoned with its connection, and a
        consumer still reading it gets BrokenResponse."""
        if not self._complete:
            self._fail(BrokenResponse("the response was closed before it ended"))
            self._connection.abort()


class ConnectionOwner(Protocol):
    """The pool a connection reports to."""

    def release(self, connection: UpstreamConnection) -> None:
        """The connection's exchange ended and it can carry another."""

    def forget(self, connection: UpstreamConnection) -> None:
        """The connection closed."""


class UpstreamConnection(asyncio.Protocol):
    """An HTTP/1.1 connection that carries one exchange at a time."""

    def __init__(self, origin: str, owner: ConnectionOwner, read_timeout: float) -> None:
        self.origin = origin
        self._owner = owner
        self._read_timeout = read_timeout
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.reused = False
        """It carried an exchange before this one (a replica may have closed it meanwhile)."""
        self.idle_since = 0.0
        self._started: asyncio.Future[UpstreamResponse] | None = None
        self._response: UpstreamResponse | None = None
        self._header_names: list[bytes] = []
        self._header_values: list[bytes] = []
        self._body_pieces: list[bytes] = []
        """Body bytes the parser found in the current read, handed to the response together."""
        self._received_any = False
        self._paused = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        self._last_data = self.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._hand_over_body()
            self._broken(BrokenResponse(f"the replica's answer is not valid HTTP/1.1: {error}"))
        else:
            self._hand_over_body()

    def eof_received(self) -> bool | None:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        response = self._response
        if response is not None and response.unbroken and self._ends_at_eof(response):
            self._response = None
            response._end()  # a body delimited by the end of the connection
        elif self._started is not None and not self._started.done():
            reason = f"{type(exc).__name__}: {exc}" if exc else "closed"
            self._started.set_exception(Disconnected(f"the replica closed the connection ({reason})"))
        elif response is not None:
            response._fail(BrokenResponse("the replica closed the connection mid-answer"))
        self._response = None
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_exception(Disconnected("the replica closed the connection while the request was sent"))
        self._owner.forget(self)

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # --- httptools callbacks ----------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_names.append(name)
        self._header_values.append(value)

    def on_headers_complete(self) -> None:
        headers = [(name.lower(), value) for name, value in zip(self._header_names, self._header_values, strict=True)]
        self._header_names.clear()
        self._header_values.clear()
        status = self._parser.get_status_code()
        if status < 200:  # 1xx: an interim answer; the real one follows
            return
        response = self._response = UpstreamResponse(self, status, headers)
        started = self._started
        if started is not None and not started.done():
            started.set_result(response)

    def on_body(self, body: bytes) -> None:
        # A stream's chunks often arrive many to a read: the response gets them as one piece.
        self._body_pieces.append(body)

    def on_message_complete(self) -> None:
        self._hand_over_body()
        response, self._response = self._response, None
        if response is None:
            return  # the end of a 1xx
        self._started = None  # the read timer stays: it stops by itself on an idle connection
        keep = self._parser.should_keep_alive()
        response._end()
        if keep and not self.closed:
            self.reused = True
            self.idle_since = self.loop.time()
            self._owner.release(self)
        else:
            self.abort()

    # --- used by the pool and the response --------------------------------------------------
    async def send(self, head: bytes, body: bytes) -> asyncio.Future[UpstreamResponse]:
        """Write one request; the future resolves when the response's headers have arrived."""
        assert self._transport is not None
        self._received_any = False
        self._started = started = self.loop.create_future()
        self._last_data = self.loop.time()
        if self._timer is None:  # one timer per connection, not one per request (see _check_read_timeout)
            self._timer = self.loop.call_later(self._read_timeout, self._check_read_timeout)
        if len(body) <= 16384:
            self._transport.write(head + body)
        else:
            self._transport.write(head)
            self._transport.write(body)
        if self._writable is not None:
            await self._writable
        return started

    def pause_reading(self) -> None:
        if not self._paused and self._transport is not None and not self.closed:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self._unread_is_low():
            self._paused = False
            self._last_data = self.loop.time()  # the wait was the consumer's, not the replica's
            if self._transport is not None and not self.closed:
                self._transport.resume_reading()

    def abort(self) -> None:
        """Close at once (an unfinished exchange makes the connection unusable)."""
        if not self.closed and self._transport is not None:
            self.closed = True
            self._transport.abort()
            self._owner.forget(self)  # at once: its slot is free for the next connection

    @property
    def received_any(self) -> bool:
        return self._received_any

    # --- internals --------------------------------------------------------------------------
    def _hand_over_body(self) -> None:
        pieces = self._body_pieces
        if pieces:
            if self._response is not None:
                self._response._feed(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            pieces.clear()

    def _unread_is_low(self) -> bool:
        response = self._response
        return response is None or response._unread <= LOW_WATER

    def _ends_at_eof(self, response: UpstreamResponse) -> bool:
        headers = response.headers  # decoded here only: a connection closing mid-answer is rare
        return (
            response.status not in _NO_BODY_STATUSES
            and "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )

    def _check_read_timeout(self) -> None:
        """Armed by the first request on an idle connection and re-armed while requests go on:
        fails the exchange once the replica has sent nothing for the whole read timeout."""
        self._timer = None
        if self.closed or (self._started is None and self._response is None):
            return
        waited = self.loop.time() - self._last_data
        if self._paused or waited < self._read_timeout:
            delay = self._read_timeout - (0 if self._paused else waited)
            self._timer = self.loop.call_later(delay, self._check_read_timeout)
            return
        self._broken(ReadTimeout(f"the replica sent nothing for {self._read_timeout:g} s"))

    def _broken(self, error: UpstreamError) -> None:
        started, self._started = self._started, None
        if started is not None and not started.done():
            started.set_exception(error)
        response, self._response = self._response, None
        if response is not None:
            response._fail(error)
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def head_of(path: str, host: str, headers: RawHeaders, length: int) -> bytes:
    """The request line and headers of a POST with a body of `length` bytes."""
    lines = [f"POST {path} HTTP/1.1\r\nhost: {host}\r\n".encode("latin-1")]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"content-length: %d\r\n\r\n" % length)
    return b"".join(lines)
