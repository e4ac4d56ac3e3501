"""Coalesce concurrent embedding requests into batches run off the event loop.

Requests queue while batches run. A worker that is free takes what queued (up to a bounded
number of items) and, when fewer requests joined than its share of the recent concurrency, waits
a few milliseconds at most for the rest: clients that just got their answers are about to send
their next request, and one batch of N runs far faster than N batches of one. A lone client never
waits. Taking only what queued, without such a target, settles into ever smaller batches once
several workers compete for the queue.

`workers` batches may run at once (on as many executor threads): while one computes, the next
one forms, and each can use fewer torch threads, which suffer less from a busy CPU. A batch is
run `alone` when the recent concurrency is one request and no other batch runs: a lone client,
whose batch may use every thread, since no other batch will want one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar, cast

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class BatchPolicy:
    """How big a batch may grow and how long its first request may wait for company."""

    max_items: int = 64
    max_wait_seconds: float = 0.005

    def target_requests(self, concurrency: int, workers: int) -> int:
        """Requests a batch should gather: this worker's share of the concurrent requests."""
        return max(1, math.ceil(concurrency / workers))

    def fits(self, batch_items: int, request_items: int) -> bool:
        """A request joins the batch if it fits; a batch always takes at least one request."""
        return batch_items == 0 or batch_items + request_items <= self.max_items


@dataclass
class ConcurrencyGauge:
    """The most requests in flight at once over the last one to two windows (times in seconds,
    passed in, so the gauge is a pure function of what it was told)."""

    window_seconds: float = 1.0
    in_flight: int = 0
    _window_start: float = 0.0
    _peak: int = 0
    _previous_peak: int = 0

    def _roll(self, now: float) -> None:
        if now - self._window_start >= self.window_seconds:
            stale = now - self._window_start >= 2 * self.window_seconds
            self._previous_peak = 0 if stale else self._peak
            self._peak = self.in_flight
            self._window_start = now

    def enter(self, now: float) -> None:
        self._roll(now)
        self.in_flight += 1
        self._peak = max(self._peak, self.in_flight)

    def leave(self, now: float) -> None:
        self._roll(now)
        self.in_flight -= 1

    def recent_peak(self, now: float) -> int:
        self._roll(now)
        return max(self._peak, self._previous_peak, self.in_flight)


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    items: Sequence[ItemT]
    future: asyncio.Future[list[ResultT]]


@dataclass
class Batcher(Generic[ItemT, ResultT]):
    """`await batcher.submit(items)` returns `run_batch`'s results for exactly those items;
    `run_batch(items, alone)` is told whether its batch runs alone (see the module's docstring).

    A batch's results come back in one call from its thread, which answers every request of the
    batch (no executor future per batch): the event loop's share of each request is kept small,
    since it holds the GIL the workers need."""

    run_batch: Callable[[list[ItemT], bool], Sequence[ResultT]]
    executor: Executor
    policy: BatchPolicy = field(default_factory=BatchPolicy)
    workers: int = 1
    batches_run: int = 0
    items_run: int = 0
    gauge: ConcurrencyGauge = field(default_factory=ConcurrencyGauge)
    _queue: asyncio.Queue[_Pending[ItemT, ResultT]] | None = None
    _carry: deque[_Pending[ItemT, ResultT]] = field(default_factory=deque)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _running: int = 0

    async def submit(self, items: Sequence[ItemT]) -> list[ResultT]:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._tasks = [
                asyncio.create_task(self._run(self._queue), name=f"embedding-batcher-{i}") for i in range(self.workers)
            ]
        future: asyncio.Future[list[ResultT]] = loop.create_future()
        self.gauge.enter(loop.time())
        try:
            self._queue.put_nowait(_Pending(items, future))
            return await future
        finally:
            self.gauge.leave(loop.time())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _next(self, queue: asyncio.Queue[_Pending[ItemT, ResultT]]) -> _Pending[ItemT, ResultT]:
        return self._carry.popleft() if self._carry else await queue.get()

    async def _collect(self, queue: asyncio.Queue[_Pending[ItemT, ResultT]]) -> list[_Pending[ItemT, ResultT]]:
        loop = asyncio.get_running_loop()
        first = await self._next(queue)
        batch, count = [first], len(first.items)
        target = self.policy.target_requests(self.gauge.recent_peak(loop.time()), self.workers)
        deadline = loop.time() + self.policy.max_wait_seconds
        while count < self.policy.max_items:
            if not queue.empty():
                candidate = queue.get_nowait()
            else:
                remaining = deadline - loop.time()
                if remaining <= 0 or len(batch) >= target:
                    break
                try:
                    candidate = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            if not self.policy.fits(count, len(candidate.items)):
                self._carry.append(candidate)
                break
            batch.append(candidate)
            count += len(candidate.items)
        return batch

    async def _run(self, queue: asyncio.Queue[_Pending[ItemT, ResultT]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue)
            live = [pending for pending in batch if not pending.future.done()]
            if not live:
                continue
            flat = [item for pending in live for item in pending.items]
            alone = self._running == 0 and self.gauge.recent_peak(loop.time()) <= 1
            self._running += 1
            finished: asyncio.Future[None] = loop.create_future()
            answer = partial(self._answer, live, finished)
            try:
                self.executor.submit(self._work, loop, flat, alone, answer)
            except RuntimeError as error:  # the executor shut down
                answer(error)
            await finished

    def _work(
        self, loop: asyncio.AbstractEventLoop, flat: list[ItemT], alone: bool, answer: Callable[[object], None]
    ) -> None:
        """On an executor thread: the batch, then one call into the event loop with its outcome."""
        try:
            outcome: object = self.run_batch(flat, alone)
        except Exception as error:  # delivered to every caller of this batch
            outcome = error
        loop.call_soon_threadsafe(answer, outcome)

    def _answer(self, live: list[_Pending[ItemT, ResultT]], finished: asyncio.Future[None], outcome: object) -> None:
        """On the event loop, once per batch: every request of the batch gets its rows (or the error)."""
        self._running -= 1
        _set_once(finished)
        if isinstance(outcome, Exception):
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(outcome)
            return
        results = cast(Sequence[ResultT], outcome)
        self.batches_run += 1
        self.items_run += len(results)
        start = 0
        for pending in live:
            end = start + len(pending.items)
            if not pending.future.done():
                pending.future.set_result(list(results[start:end]))
            start = end


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
