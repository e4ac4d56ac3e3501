"""uvicorn's httptools protocol, with a response's status line and headers sent together with its
first body bytes: one system call (and one TCP segment for the client to wake up for) fewer per
response.

uvicorn writes the head when the app sends `http.response.start`, then each body message as it
comes: two sends for an ordinary answer, and a stream's head on its own. Here the head is held and
goes out in one vectored send (`writelines`) with the first body write that follows, or, when no
body follows in the same turn of the event loop (a stream whose first token is still coming), at
the end of that turn (one `call_soon`). Body writes are never held, so no chunk of a stream waits
for the next; closing the connection sends a held head first. What a client sees changes only in
how the bytes are cut into segments; docs/gateway.md ("Fewer sends") has the counts.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport(asyncio.Transport):
    """A transport that holds each response's first write (its head) until the next write or
    the end of the turn; everything else is the wrapped transport's."""

    __slots__ = ("_expect_head", "_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._expect_head = True
        self._head: bytes | None = None

    # --- writing ------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._expect_head:
            self._expect_head = False
            self._head = bytes(data)
            self._loop.call_soon(self.flush)
            return
        head, self._head = self._head, None
        if head is None:
            self._transport.write(data)
        elif not self._transport.is_closing():
            self._transport.writelines([head, data])

    def next_response(self) -> None:
        """The response ended: the next write on this connection is the next response's head."""
        self.flush()
        self._expect_head = True

    def flush(self) -> None:
        """Send a head still held (a no-op when none is, or the connection is closing)."""
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._head = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._head or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    # --- everything else is the socket's own ----------------------------------------------------
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a CoalescingTransport: `uvicorn.Config(http=...)`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(self.coalescing)

    def on_response_complete(self) -> None:
        self.coalescing.next_response()
        super().on_response_complete()
