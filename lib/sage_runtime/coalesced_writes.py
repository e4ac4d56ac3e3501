"""uvicorn's httptools protocol with one socket write per turn of the event loop.

uvicorn writes a response's status line and headers when the app sends `http.response.start`,
and its body at `http.response.body`: two sends on the socket, two packets, and for a client that
reads the head before the body, two wake-ups. Under load the first send held the event loop (and
the GIL) three times as long as the second in the engine's profile. Here a connection's writes
gather until the end of the loop turn that made them and leave in one send; a response whose
start and body are sent in the same turn (every plain response) is one packet. `close()` sends
what is gathered first. Streams lose nothing: each chunk's turn ends before the next chunk.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose `write`s gather until the end of the loop turn (see the module)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, set_protocol, get_extra_info, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's `http="httptools"` protocol on a `CoalescingTransport`; pass the class as
    `uvicorn.Config(http=...)`. Flow control still watches the real transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = cast(asyncio.Transport, CoalescingTransport(transport, self.loop))
