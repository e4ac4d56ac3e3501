"""A keyed, coalescing work queue, the way controller-runtime's is: a key added many times while it
waits is processed once; a key is never processed twice at the same time; failures back off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        work: Callable[[K], Awaitable[None]],
        *,
        workers: int,
        base_backoff: float = 0.5,
        max_backoff: float = 60.0,
        told: tuple[type[Exception], ...] = (),
    ) -> None:
        """`told`: failures whose message says it all (e.g. the API server's answer), logged in one
        line; any other failure is logged with its traceback."""
        self._work = work
        self._told = told
        self._workers = workers
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()
        self._running: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"reconcile-worker-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def add(self, key: K) -> None:
        if key in self._waiting:
            return
        self._waiting.add(key)
        if key not in self._running:
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` after `delay` seconds (an earlier pending timer for it wins)."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def idle(self) -> bool:
        return not self._waiting and not self._running

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._running.add(key)
            try:
                await self._work(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self._base_backoff * 2 ** (failures - 1), self._max_backoff)
                if isinstance(error, self._told):
                    log.warning(
                        "reconciling %s failed (attempt %d): %s; retrying in %.1fs", key, failures, error, delay
                    )
                else:
                    log.exception("reconciling %s failed (attempt %d); retrying in %.1fs", key, failures, delay)
                self.add_after(key, delay)
            else:
                self._failures.pop(key, None)
            finally:
                self._running.discard(key)
                if key in self._waiting:
                    self._queue.put_nowait(key)
