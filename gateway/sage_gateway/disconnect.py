"""Cancelling work whose client went away before its answer started."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from sage_wire.asgi import ClientGone

T = TypeVar("T")


async def _disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


WATCH_AFTER_SECONDS = 0.05
"""Requests answered faster than this never pay for a disconnect watcher."""


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work` (the body must already be read); if the client goes away first, cancel it
    and raise ClientGone, so that the upstream request is abandoned too.

    `work` runs in the current task. Only when it has not finished after WATCH_AFTER_SECONDS (a
    generation, not an embedding) does a watcher task start listening for the disconnect; a
    timer costs next to nothing per request, a task does not."""
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None
    state = {"gone": False, "finished": False}
    watchers: list[asyncio.Task[None]] = []

    def on_disconnect(watcher: asyncio.Task[None]) -> None:
        if state["finished"] or watcher.cancelled() or watcher.exception() is not None:
            return
        state["gone"] = True
        current.cancel()

    def start_watching() -> None:
        if not state["finished"]:
            watcher = loop.create_task(_disconnect(request))
            watcher.add_done_callback(on_disconnect)
            watchers.append(watcher)

    timer = loop.call_later(WATCH_AFTER_SECONDS, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if state["gone"]:
            current.uncancel()
            raise ClientGone from None
        raise
    finally:
        state["finished"] = True
        timer.cancel()
        for watcher in watchers:
            watcher.cancel()
