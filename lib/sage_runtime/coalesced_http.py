"""uvicorn's httptools protocol, with every write made in one turn of the event loop leaving in
one send: a response's status line and headers go out together with its body, and a stream whose
chunks are already there goes out in one piece, instead of one system call (and one TCP segment
for the client to wake up for) per ASGI message.

uvicorn writes the head when the app sends `http.response.start`, each body message as it comes,
and the chunked encoding's terminator last: three sends for a short stream, two for any other
response. Here the writes are held until the end of the current turn of the loop (one `call_soon`
per batch) and then handed to the socket together (`writelines`: one vectored send on uvloop).
A response that is complete goes out at once, as does a batch that grows past `FLUSH_BYTES` (nothing
large is held), and closing the connection sends what is held first. What a client sees changes only in how the bytes
are cut into segments; docs/gateway.md ("Fewer sends") has the counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_BYTES = 64 * 1024
"""Held bytes at which a batch goes out without waiting for the end of the turn."""


class CoalescingTransport(asyncio.Transport):
    """A transport that batches the writes of one turn of the loop; everything else is the
    wrapped transport's."""

    __slots__ = ("_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._held_bytes = 0

    # --- writing ------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            held = self._held = []
            self._held_bytes = 0
            self._loop.call_soon(self.flush)
        held.append(bytes(data) if not isinstance(data, bytes) else data)
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_BYTES:
            self.flush()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send what is held (a no-op when nothing is, or the connection is closing)."""
        held, self._held = self._held, None
        if not held or self._transport.is_closing():
            return
        if len(held) == 1:
            self._transport.write(held[0])
        else:
            self._transport.writelines(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (self._held_bytes if self._held is not None else 0)

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
    """uvicorn's httptools protocol on a CoalescingTransport: `uvicorn.Config(http=...)`.

    A response that is complete goes out at once, before the request's remaining bookkeeping
    runs, so that holding its writes costs a lone client no latency."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(self.coalescing)

    def on_response_complete(self) -> None:
        self.coalescing.flush()
        super().on_response_complete()
