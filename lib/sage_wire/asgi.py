"""The wire format at the ASGI boundary (Starlette): request bodies read within a limit, work
cancelled when its client goes away, and errors turned into responses in a protocol's envelope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar
from typing import Protocol as Interface

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sage_wire.envelopes import Protocol, error_body
from sage_wire.errors import WireError, body_too_large
from sage_wire.media import JSON, REQUEST_ID, RawHeaders


class ClientGone(Exception):
    """The client disconnected before its request was read or answered."""


async def read_body(
    request: Request, limit: int, content_length: str | None, on_chunk: Callable[[int], None] | None = None
) -> bytes:
    """The request body, or a 413 as soon as it is known to exceed `limit` bytes (declared in
    `content_length`, the request's Content-Length header, or actually sent); ClientGone when the
    client hangs up meanwhile. `on_chunk` is told the size of each chunk as it arrives (and may
    refuse it by raising)."""
    # The ASGI messages themselves: Starlette's stream() is a generator more.
    return await receive_body(request.receive, limit, content_length, on_chunk)


async def receive_body(
    receive: Receive, limit: int, content_length: str | None, on_chunk: Callable[[int], None] | None = None
) -> bytes:
    """`read_body` on a raw ASGI `receive`."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            if on_chunk is not None:
                on_chunk(len(chunk))
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Answer(Interface):
    """A response ready to go out: a Starlette Response is one, so are the two below."""

    status_code: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class CompleteAnswer:
    """A whole body and headers already as bytes, sent as the two ASGI messages themselves.

    Starlette's Response encodes (and lower-cases) every header of a dict on each request; an
    answer relayed from an upstream has its headers as bytes already (see docs/gateway.md)."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(self, body: bytes, status_code: int, raw_headers: RawHeaders) -> None:
        self.body = body
        self.status_code = status_code
        if status_code >= 200 and status_code not in (204, 304):  # as Starlette's Response
            raw_headers.append((b"content-length", b"%d" % len(body)))
        self.raw_headers = raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def error_response(error: WireError, protocol: Protocol = Protocol.OPENAI, request_id: str | None = None) -> Response:
    headers = dict(error.headers)
    if request_id:
        headers[REQUEST_ID] = request_id
    return Response(error_body(error, protocol), error.status, headers, media_type=JSON)


T = TypeVar("T")


WATCH_AFTER_SECONDS = 0.05
"""Requests answered (and streams ended) faster than this never pay for a disconnect watcher."""


class _DisconnectWatch:
    """Cancels `task` if its client goes away, watching only from WATCH_AFTER_SECONDS on: waiting
    in its loop's `_Watches` costs next to nothing per request, a task listening for the
    disconnect does not."""

    __slots__ = ("_receive", "_task", "_watcher", "_watches", "done", "gone")

    def __init__(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        self._receive = receive
        self._task = task
        self._watcher: asyncio.Task[None] | None = None
        self.done = False
        """The work ended (a disconnect seen from now on changes nothing)."""
        self.gone = False
        """The client went away and the task was cancelled for it."""
        self._watches = _watches_of(task.get_loop())
        self._watches.add(self)

    def start(self) -> None:
        if not self.done:
            self._watcher = self._task.get_loop().create_task(_disconnect_of(self._receive))
            self._watcher.add_done_callback(self._on_disconnect)

    def _on_disconnect(self, watcher: asyncio.Task[None]) -> None:
        if not self.done and not watcher.cancelled() and watcher.exception() is None:
            self.gone = True
            self._task.cancel()

    def stop(self) -> None:
        self.done = True
        self._watches.waiting.pop(self, None)
        if self._watcher is not None:
            self._watcher.cancel()


class _Watches:
    """The watches of one event loop still waiting for WATCH_AFTER_SECONDS, oldest first, and one
    timer for all of them, due when the oldest is: uvloop's call_later and cancel, once per
    request, cost about 2 µs; a dict entry a tenth of that."""

    __slots__ = ("loop", "timer", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[_DisconnectWatch, float] = {}
        """Each watch and when it began (insertion order is age order)."""
        self.timer: asyncio.TimerHandle | None = None

    def add(self, watch: _DisconnectWatch) -> None:
        self.waiting[watch] = now = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_at(now + WATCH_AFTER_SECONDS, self._start_due)

    def _start_due(self) -> None:
        self.timer = None
        due_before = self.loop.time() - WATCH_AFTER_SECONDS
        while self.waiting:
            watch, began = next(iter(self.waiting.items()))
            if began > due_before:
                self.timer = self.loop.call_at(began + WATCH_AFTER_SECONDS, self._start_due)
                return
            del self.waiting[watch]
            watch.start()


_current_watches: list[_Watches] = []
"""The running loop's (a server runs one). Each watch keeps its own, so a new loop (a test's) just
starts another."""


def _watches_of(loop: asyncio.AbstractEventLoop) -> _Watches:
    if not _current_watches or _current_watches[0].loop is not loop:
        _current_watches[:] = [_Watches(loop)]
    return _current_watches[0]


def _current_task() -> asyncio.Task[Any]:
    current = asyncio.current_task()
    assert current is not None
    return current


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work` (the body must already be read); if the client goes away first, cancel it
    and raise ClientGone, so that the upstream request is abandoned too. `work` runs in the
    current task."""
    return await unless_gone(request.receive, work)


async def unless_gone(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """`unless_disconnected` on a raw ASGI `receive`."""
    current = _current_task()
    watch = _DisconnectWatch(receive, current)
    try:
        return await work
    except asyncio.CancelledError:
        if watch.gone:
            current.uncancel()
            raise ClientGone from None
        raise
    finally:
        watch.stop()


class LastChunk(bytes):
    """A stream's last bytes, known to be last when they are yielded (its source already ended):
    RelayedStream sends them as the end of the response, in the same write as the chunked
    terminator, instead of sending the terminator on its own after them."""

    __slots__ = ()


class RelayedStream(Response):
    """A response streamed chunk by chunk as `chunks` yields them; a client that goes away ends it
    (the generator is closed where it waits, so whatever feeds it is abandoned too). A LastChunk
    ends the response with it.

    Starlette's StreamingResponse does the same with an anyio task group per response, which took a
    visible share of each stream's first-byte time in the gateway's profile; here a stream that
    lasts longer than WATCH_AFTER_SECONDS gets one plain task waiting for the disconnect."""

    def __init__(self, chunks: AsyncIterator[bytes], status_code: int, raw_headers: RawHeaders) -> None:
        self.chunks = chunks
        self.status_code = status_code
        self.background = None
        self.raw_headers = raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        current = _current_task()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        watch = _DisconnectWatch(receive, current)
        try:
            ended = False
            async for chunk in self.chunks:
                if ended:
                    raise RuntimeError("a stream yielded more after its LastChunk")
                ended = type(chunk) is LastChunk
                watch.done = ended
                await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            if not ended:
                watch.done = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.gone:
                raise
            current.uncancel()  # the client left: nothing more to send, nothing went wrong here
        finally:
            watch.stop()
            closer = getattr(self.chunks, "aclose", None)
            if closer is not None:
                await closer()


async def _disconnect_of(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
