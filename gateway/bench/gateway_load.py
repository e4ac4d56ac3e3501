"""The gateway benchmark's load generator: closed-loop clients on keep-alive HTTP/1.1 connections.

At 64 clients a Python load generator, not the server, is what limits req/s, so this one costs as
little as a Python client can: one asyncio protocol per connection, httptools' C parser, each
request pre-encoded once and sent in one write. It times whole requests and, for streams, the
first body bytes (time to first token). Connections are opened and warmed before the clock starts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

WARMUP_PER_CLIENT = 2
"""Unmeasured requests per client first: connections open, the server's code paths are warm."""


@dataclass
class Measurement:
    """One scenario against one target in one round."""

    latencies: list[float] = field(default_factory=list)
    """Seconds per answered request (200); empty when the load came from wrk."""
    ttfts: list[float] = field(default_factory=list)
    completed: int = 0
    elapsed: float = 0.0
    errors: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0
    """CPU time of the target's process tree over the measured requests."""

    @property
    def requests(self) -> int:
        return self.completed + self.errors

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0


def encode_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole request on the wire, built once and sent as is by every client."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ResponseFailed(Exception):
    """The connection closed or the answer was not HTTP; the message says which."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future[int] | None = None
        self.first_body_at = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ResponseFailed(f"not HTTP/1.1: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ResponseFailed(f"connection closed ({exc or 'by the server'})"))

    def on_body(self, body: bytes) -> None:
        if not self.first_body_at:
            self.first_body_at = time.perf_counter()

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(self._parser.get_status_code())

    def _fail(self, error: Exception) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)

    def send(self, request: bytes) -> asyncio.Future[int]:
        """Write `request`; the future resolves with the status once the answer has ended."""
        assert self._transport is not None
        self.first_body_at = 0.0
        self._done = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._done

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def _connect(host: str, port: int) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_connection(_Connection, host, port)
    return connection


async def run_load(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    total: int,
    max_seconds: float,
    server_cpu: Callable[[], float],
) -> Measurement:
    """`concurrency` clients each send `request` as soon as their previous answer ended, until
    `total` requests were sent or `max_seconds` passed (a slow target costs bounded time).
    `server_cpu()` is read right before and after the measured requests."""
    measurement = Measurement()
    remaining = total
    connections = [await _connect(host, port) for _ in range(concurrency)]

    async def client(index: int, *, measured: bool, deadline: float) -> None:
        nonlocal remaining
        warmup = WARMUP_PER_CLIENT
        while (remaining > 0 if measured else warmup > 0) and time.perf_counter() < deadline:
            if measured:
                remaining -= 1
            else:
                warmup -= 1
            if connections[index].closed:  # the server ended keep-alive: open another one
                try:
                    connections[index] = await _connect(host, port)
                except OSError as error:  # the target went away: this client stops, the run goes on
                    measurement.errors += 1
                    measurement.reasons[f"connect: {error}"[:80]] += 1
                    return
            connection = connections[index]
            started = time.perf_counter()
            try:
                status = await connection.send(request)
            except ResponseFailed as error:
                if measured:
                    measurement.errors += 1
                    measurement.reasons[str(error)[:80]] += 1
                continue
            if not measured:
                continue
            if status != 200:
                measurement.errors += 1
                measurement.reasons[f"HTTP {status}"] += 1
                continue
            measurement.completed += 1
            measurement.latencies.append(time.perf_counter() - started)
            if connection.first_body_at:
                measurement.ttfts.append(connection.first_body_at - started)

    try:
        warm_deadline = time.perf_counter() + max_seconds
        await asyncio.gather(*(client(i, measured=False, deadline=warm_deadline) for i in range(concurrency)))
        cpu_before = server_cpu()
        started = time.perf_counter()
        deadline = started + max_seconds
        await asyncio.gather(*(client(i, measured=True, deadline=deadline) for i in range(concurrency)))
        measurement.elapsed = time.perf_counter() - started
        measurement.cpu_seconds = server_cpu() - cpu_before
    finally:
        for connection in connections:
            connection.close()
    return measurement
