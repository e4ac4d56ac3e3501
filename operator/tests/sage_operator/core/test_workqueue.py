"""The reconcile work queue: coalescing, one run per key at a time, retries after failures."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sage_operator.core.workqueue import WorkQueue

WAIT = 10.0


class Recorder:
    """Records runs and wakes waiters after each one."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.changed = asyncio.Condition()

    async def note(self, log: list[str], key: str) -> None:
        async with self.changed:
            log.append(key)
            self.changed.notify_all()

    async def until(self, predicate: object) -> None:
        assert callable(predicate)
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(predicate)


async def test_keys_added_while_waiting_or_running_coalesce() -> None:
    record = Recorder()
    release = asyncio.Event()
    active: set[str] = set()
    overlapping: list[str] = []

    async def work(key: str) -> None:
        if key in active:
            overlapping.append(key)
        active.add(key)
        await record.note(record.started, key)
        await release.wait()
        active.discard(key)
        await record.note(record.finished, key)

    queue: WorkQueue[str] = WorkQueue(work, workers=4)
    queue.start()
    try:
        queue.add("a")
        await record.until(lambda: record.started == ["a"])
        for _ in range(5):  # added while "a" runs: one more run afterwards, not five, not concurrent
            queue.add("a")
        queue.add("b")
        await record.until(lambda: sorted(record.started) == ["a", "b"])
        release.set()
        await record.until(lambda: len(record.finished) == 3)
        assert sorted(record.started) == ["a", "a", "b"]
        assert overlapping == []
        assert queue.idle()
    finally:
        await queue.stop()


async def test_a_failing_key_is_retried_until_it_succeeds() -> None:
    record = Recorder()

    async def work(key: str) -> None:
        await record.note(record.started, key)
        if len(record.started) < 3:
            raise RuntimeError("API server said no")
        await record.note(record.finished, key)

    queue: WorkQueue[str] = WorkQueue(work, workers=1, base_backoff=0.01, max_backoff=0.05)
    queue.start()
    try:
        queue.add("k")
        await record.until(lambda: record.finished == ["k"])
        assert record.started == ["k", "k", "k"]
    finally:
        await queue.stop()


class Refused(Exception):
    """Stands for an answer whose message says it all (the operator passes sage_kube's ApiError)."""


async def test_told_failures_are_one_line_and_others_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    record = Recorder()
    failures = [Refused("500 InternalError: no free cluster IP"), RuntimeError("a bug")]

    async def work(key: str) -> None:
        await record.note(record.started, key)
        if failures:
            raise failures.pop(0)
        await record.note(record.finished, key)

    queue: WorkQueue[str] = WorkQueue(work, workers=1, base_backoff=0.01, max_backoff=0.05, told=(Refused,))
    queue.start()
    try:
        with caplog.at_level(logging.WARNING, logger="sage_operator.core.workqueue"):
            queue.add("k")
            await record.until(lambda: record.finished == ["k"])
    finally:
        await queue.stop()
    told, other = caplog.records
    assert "no free cluster IP" in told.getMessage()
    assert told.exc_info is None
    assert other.exc_info is not None
    assert "a bug" in str(other.exc_info[1])
