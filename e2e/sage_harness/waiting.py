"""The one way the harness waits: poll a condition until it holds, and say what was awaited and
what was last seen when it never does (a wait, never a timing assertion)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold in time; the message says what was awaited and what was last seen."""


def wait_until(
    check: Callable[[], T | None],
    what: str,
    timeout: float = 60,
    interval: float = 0.05,
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Polls `check` until it returns something truthy (which is returned). Exceptions count as
    'not yet', but for those of the `fatal` types, which end the wait at once; the last result or
    exception is reported on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except fatal:
            raise
        except Exception as error:
            last = error
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"
            raise WaitTimeout(msg)
        time.sleep(interval)


async def wait_until_async(check: Callable[[], T | None], what: str, within: float = 60, interval: float = 0.05) -> T:
    """`wait_until` for a condition that code in this event loop makes true (it must keep running)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"timed out after {within:.0f}s waiting for {what}; last: {result!r}"
            raise WaitTimeout(msg)
        await asyncio.sleep(interval)
