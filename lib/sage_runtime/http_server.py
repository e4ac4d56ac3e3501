"""The HTTP/1.1 connection under the gateway's and the engine's ASGI apps: `uvicorn.Config(http=
HttpServerProtocol)`. uvicorn still runs the server (sockets, lifespan, signals, graceful shutdown);
this replaces its httptools protocol, doing the same work per request with less of it:

- a response's head leaves in the same send as its first body bytes (a head whose body is not
  ready in the same turn of the event loop goes out at the end of that turn, so a stream's status
  line never waits for its first token); body writes are never held;
- each header is framed in one step and the whole head is checked for control characters once,
  instead of two regular expressions per header;
- a request body that arrived whole is handed over without an event or a future;
- the keep-alive timeout is one timer per connection that re-arms itself, not a timer started
  and cancelled per request.

What a client sees is the same HTTP/1.1: keep-alive, pipelining (one request answered at a time),
chunked framing when the app names no length, HEAD, `Expect: 100-continue`, a 400 for a request
the parser refuses, a 500 when the app fails before its response started. WebSocket upgrades are
not served (neither app has a WebSocket route): such a request is answered as plain HTTP and the
connection closed after it. docs/gateway.md ("The HTTP server") has the measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

from sage_runtime.http_response import STATUS_LINES, HttpExchange

log = logging.getLogger("uvicorn.error")

HIGH_WATER = 65536
"""Request body bytes buffered before the connection stops reading until the app takes them."""


class HttpServerProtocol(asyncio.Protocol):
    """One client connection (uvicorn makes one per accepted socket)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.root_path: str = config.root_path
        self.keep_alive_seconds = float(config.timeout_keep_alive)
        self.limit_concurrency: int | None = config.limit_concurrency
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # httptools < 0.6.3 has no leniencies
            # A request pipelined behind one that says `Connection: close` is not an error.
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment] # until connection_made
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        # The request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.discarding = False
        """Input is no longer read: a refused request, or an upgrade to a protocol not spoken here."""
        self.parsing: HttpExchange | None = None
        """The request whose body the parser is reading."""
        self.active: HttpExchange | None = None
        """The request being answered; pipelined ones wait in `queued`."""
        self.queued: deque[HttpExchange] = deque()
        # Flow control and the keep-alive timeout.
        self.read_paused = False
        self.write_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.idle_since = 0.0
        self.keep_alive_timer: asyncio.TimerHandle | None = None

    # --- the connection -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # uvloop's are not its subclasses
        self.server_state.connections.add(self)  # type: ignore[arg-type] # uvicorn's own protocols' set
        self.transport = transport
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        self.idle_since = self.loop.time()
        self._arm_keep_alive(self.keep_alive_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        for request in (self.active, self.parsing, *self.queued):
            if request is not None:
                request.client_left()
        self.resume_writing()
        if self.keep_alive_timer is not None:
            self.keep_alive_timer.cancel()
            self.keep_alive_timer = None
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def shutdown(self) -> None:
        """The server is shutting down: close now if idle, else after the current response."""
        if self.active is None:
            self.transport.close()
        else:
            self.active.keep_alive = False

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.discarding = True
            if self.parsing is not None:
                self.parsing.keep_alive = False
        except httptools.HttpParserError:
            self.discarding = True
            log.warning("Invalid HTTP request received.")
            self._refuse("Invalid HTTP request received.")

    def _refuse(self, message: str) -> None:
        body = message.encode("ascii")
        head = [STATUS_LINES[400], *(b"%s: %s\r\n" % pair for pair in self.server_state.default_headers)]
        head.append(b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body))
        self.transport.write(b"".join([*head, b"connection: close\r\n\r\n", body]))
        self.transport.close()

    # --- parser callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        url = self.url
        if url[:1] == b"/" and b"?" not in url and b"%" not in url and b"#" not in url:
            raw_path, query = url, b""  # the usual origin-form path: nothing to parse
        else:
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path, parsed.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            from urllib.parse import unquote  # noqa: PLC0415 - rare

            path = unquote(path)
        method = parser.get_method().decode("ascii")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": self.root_path,
            "path": self.root_path + path,
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": query,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        request = HttpExchange(self, scope, keep_alive=keep_alive, expect_continue=self.expect_continue)
        self.parsing = request
        if self.active is None:
            self._start(request)
        else:  # pipelined: answered once the one before it is
            self.queued.append(request)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if request is not None and request.take_body(body) > HIGH_WATER:
            self.pause_reading()

    def on_message_complete(self) -> None:
        if self.parsing is not None:
            self.parsing.body_complete()

    # --- requests -----------------------------------------------------------------------------
    def _start(self, request: HttpExchange) -> None:
        self.active = request
        limit = self.limit_concurrency
        state = self.server_state
        app = self.app
        if limit is not None and (len(state.connections) >= limit or len(state.tasks) >= limit):
            log.warning("Exceeded concurrency limit.")
            app = service_unavailable
        task = self.loop.create_task(request.run(app))
        task.add_done_callback(state.tasks.discard)
        state.tasks.add(task)

    def response_complete(self, request: HttpExchange) -> None:
        """`request`'s last bytes are written: close, or answer the next one, or wait for it."""
        self.server_state.total_requests += 1
        if not request.keep_alive:
            self.transport.close()
            return
        if self.transport.is_closing():
            return
        self.active = None
        self.resume_reading()
        if self.queued:
            self._start(self.queued.popleft())
        else:
            self.idle_since = self.loop.time()
            if self.keep_alive_timer is None:
                self._arm_keep_alive(self.keep_alive_seconds)

    def _arm_keep_alive(self, delay: float) -> None:
        self.keep_alive_timer = self.loop.call_later(delay, self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        """Close a connection idle for the keep-alive timeout; else look again when it could be."""
        self.keep_alive_timer = None
        if self.transport.is_closing():
            return
        if self.active is not None:
            self._arm_keep_alive(self.keep_alive_seconds)
            return
        idle = self.loop.time() - self.idle_since
        if idle >= self.keep_alive_seconds:
            self.transport.close()
        else:
            self._arm_keep_alive(self.keep_alive_seconds - idle)

    # --- flow control -------------------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Until the transport's write buffer is below its low-water mark (or the client left)."""
        waiter = self.loop.create_future()
        self.drain_waiters.append(waiter)
        await waiter
