"""Coalesce concurrent embedding requests into batches run one at a time off the event loop.

Requests queue up while a batch runs; the next batch takes what queued (up to a bounded number
of items). When the previous batch showed concurrent traffic, the batch waits a few milliseconds
at most for as many requests as the previous one had: clients that just got their answers are
about to send their next request, and one batch of N runs far faster than N batches of one.
`workers` batches may run at once (on as many executor threads): while one computes, the next
one forms, and each can use fewer torch threads, which suffer less from a busy CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class BatchPolicy:
    """How big a batch may grow and how long the first request of a batch may wait for company."""

    max_items: int = 64
    max_wait_seconds: float = 0.003

    def wait_budget(self, previous_batch_requests: int) -> float:
        """Wait only when traffic is concurrent: a lone client should never pay for batching."""
        return self.max_wait_seconds if previous_batch_requests > 1 else 0.0

    def expects_more(self, batch_requests: int, previous_batch_requests: int) -> bool:
        """Keep waiting only while fewer requests joined than the previous batch had."""
        return batch_requests < previous_batch_requests

    def fits(self, batch_items: int, request_items: int) -> bool:
        """A request joins the batch if it fits; a batch always takes at least one request."""
        return batch_items == 0 or batch_items + request_items <= self.max_items


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    items: Sequence[ItemT]
    future: asyncio.Future[list[ResultT]]


@dataclass
class Batcher(Generic[ItemT, ResultT]):
    """`await batcher.submit(items)` returns `run_batch`'s results for exactly those items."""

    run_batch: Callable[[list[ItemT]], Sequence[ResultT]]
    executor: Executor
    policy: BatchPolicy = field(default_factory=BatchPolicy)
    workers: int = 1
    batches_run: int = 0
    items_run: int = 0
    _queue: asyncio.Queue[_Pending[ItemT, ResultT]] | None = None
    _carry: deque[_Pending[ItemT, ResultT]] = field(default_factory=deque)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def submit(self, items: Sequence[ItemT]) -> list[ResultT]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._tasks = [
                asyncio.create_task(self._run(self._queue), name=f"embedding-batcher-{i}") for i in range(self.workers)
            ]
        future: asyncio.Future[list[ResultT]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(items, future))
        return await future

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _next(self, queue: asyncio.Queue[_Pending[ItemT, ResultT]]) -> _Pending[ItemT, ResultT]:
        return self._carry.popleft() if self._carry else await queue.get()

    async def _collect(
        self, queue: asyncio.Queue[_Pending[ItemT, ResultT]], previous_requests: int
    ) -> list[_Pending[ItemT, ResultT]]:
        loop = asyncio.get_running_loop()
        first = await self._next(queue)
        batch, count = [first], len(first.items)
        deadline = loop.time() + self.policy.wait_budget(previous_requests)
        while count < self.policy.max_items:
            if not queue.empty():
                candidate = queue.get_nowait()
            else:
                remaining = deadline - loop.time()
                if remaining <= 0 or not self.policy.expects_more(len(batch), previous_requests):
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
        previous_requests = 0
        while True:
            batch = await self._collect(queue, previous_requests)
            live = [pending for pending in batch if not pending.future.done()]
            previous_requests = len(batch)
            if not live:
                continue
            flat = [item for pending in live for item in pending.items]
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, flat)
            except Exception as error:  # delivered to every caller of this batch
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            self.batches_run += 1
            self.items_run += len(flat)
            start = 0
            for pending in live:
                end = start + len(pending.items)
                if not pending.future.done():
                    pending.future.set_result(list(results[start:end]))
                start = end
