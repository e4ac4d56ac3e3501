"""Shutting down without cutting anyone off (the gateway and the engine alike). On the first
SIGTERM the server turns unready and stops accepting connections (a preStop hook has already
given the endpoints time to drop the pod); requests and streams in flight may finish for
`seconds`; the callbacks registered with `on_expiry` then end whatever is still open with an
error event in its protocol's shape (never a silent truncation), and the process exits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Drain:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self._on_expiry: dict[Callable[[], None], None] = {}
        """An ordered set: streams register and forget themselves one by one."""
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the server runs in (set at startup): signals arrive on the main thread."""
        self._loop = loop

    def on_expiry(self, callback: Callable[[], None]) -> None:
        self._on_expiry[callback] = None

    def begin_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.begin)

    def begin(self) -> None:
        if self.draining:
            return
        self.draining = True
        log.warning("shutting down: unready, in-flight requests have %.0f s to finish", self.seconds)
        asyncio.get_running_loop().call_later(self.seconds, self._expire)

    def _expire(self) -> None:
        log.warning("drain time is over: ending the streams still open with an error event")
        for callback in list(self._on_expiry):
            callback()

    def forget(self, callback: Callable[[], None]) -> None:
        """A stream that ended by itself no longer needs ending."""
        self._on_expiry.pop(callback, None)
