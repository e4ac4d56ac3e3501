"""Keep-alive connections to every replica, at most `max_connections` open at once.

`post()` sends a body to a replica and returns its response once the headers arrived. An idle
connection to the same replica is reused (the most recently used first, so a quiet gateway keeps
few); a replica closes idle connections after its own keep-alive time, and a request written onto
one just as it closed is sent once more on a new connection (nothing of an answer had come, so
the replica did no work for it).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from sage_gateway.upstream.connection import UpstreamConnection, UpstreamResponse, head_of
from sage_gateway.upstream.errors import ConnectFailed, ConnectTimeout, Disconnected
from sage_wire.media import RawHeaders

_ORIGINS_KEPT = 4096


@dataclass(frozen=True)
class Origin:
    """Where a replica's base URL points: `http://10.0.0.7:8000` -> host, port, Host header."""

    key: str
    host: str
    port: int
    tls: bool
    host_header: str


def parse_origin(base_url: str) -> Origin:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"a replica URL must be http://host[:port] or https://host[:port], got {base_url!r}"
        raise ConnectFailed(msg)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    return Origin(f"{parts.scheme}://{parts.hostname}:{port}", parts.hostname, port, tls, parts.netloc)


class UpstreamPool:
    """The gateway's one client to its replicas (see the module docstring)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_timeout: float,
        max_connections: int,
        keepalive_seconds: float = 30.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_timeout = pool_timeout
        self.max_connections = max_connections
        self.keepalive_seconds = keepalive_seconds
        self._origins: dict[str, Origin] = {}
        self._idle: dict[str, list[UpstreamConnection]] = {}
        self._open: set[UpstreamConnection] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tls: ssl.SSLContext | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open) + self._opening

    async def post(self, base_url: str, path: str, body: bytes, headers: RawHeaders) -> UpstreamResponse:
        """POST `body` to `base_url + path`; the response once its headers arrived. Raises
        NotStarted (safe to try elsewhere), ReadTimeout or BrokenResponse."""
        origin = self._origin(base_url)
        head = head_of(path, origin.host_header, headers, len(body))
        retried = False
        while True:
            connection = await self._acquire(origin)
            try:
                started = await connection.send(head, body)
                return await started
            except Disconnected:
                connection.abort()
                if connection.reused and not connection.received_any and not retried:
                    retried = True  # the replica closed its idle end as we wrote: once more, fresh
                    continue
                raise
            except BaseException:
                connection.abort()
                raise

    async def close(self) -> None:
        for connection in list(self._open):
            connection.abort()
        self._idle.clear()

    # --- ConnectionOwner --------------------------------------------------------------------
    def release(self, connection: UpstreamConnection) -> None:
        self._idle.setdefault(connection.origin, []).append(connection)
        self._wake_one()

    def forget(self, connection: UpstreamConnection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            idle = self._idle.get(connection.origin)
            if idle is not None and connection in idle:
                idle.remove(connection)
            self._wake_one()

    # --- internals --------------------------------------------------------------------------
    def _origin(self, base_url: str) -> Origin:
        origin = self._origins.get(base_url)
        if origin is None:
            if len(self._origins) >= _ORIGINS_KEPT:
                self._origins.clear()
            origin = self._origins[base_url] = parse_origin(base_url)
        return origin

    def _idle_connection(self, origin: Origin, now: float) -> UpstreamConnection | None:
        idle = self._idle.get(origin.key)
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            if now - connection.idle_since > self.keepalive_seconds:
                connection.abort()
                continue
            return connection
        return None

    async def _acquire(self, origin: Origin) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pool_timeout
        while True:
            connection = self._idle_connection(origin, loop.time())
            if connection is not None:
                return connection
            if self.open_connections < self.max_connections or self._close_an_idle_connection():
                return await self._connect(origin)
            remaining = deadline - loop.time()
            if remaining <= 0:
                msg = f"no free connection to the replicas within {self.pool_timeout:g} s ({self.max_connections} open)"
                raise ConnectTimeout(msg)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                continue  # the deadline check above answers
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _close_an_idle_connection(self) -> bool:
        """Room for a new connection, made by closing an idle one to some other replica."""
        for idle in self._idle.values():
            while idle:
                connection = idle.pop(0)  # the longest idle
                if not connection.closed:
                    connection.abort()
                    self._open.discard(connection)
                    return True
        return False

    async def _connect(self, origin: Origin) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        self._opening += 1
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamConnection(origin.key, self, self.read_timeout),
                    origin.host,
                    origin.port,
                    ssl=self._tls_context() if origin.tls else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            self._wake_one()  # the slot it would have taken is free again
            raise ConnectTimeout(f"connecting to {origin.key} took over {self.connect_timeout:g} s") from None
        except OSError as error:
            self._wake_one()
            raise ConnectFailed(f"connecting to {origin.key}: {error.strerror or error}") from None
        finally:
            self._opening -= 1
        self._open.add(connection)
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
