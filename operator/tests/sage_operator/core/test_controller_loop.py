"""The controller loop: a failed resync listing is tried again soon, not a whole period later;
the echo of the controller's own status write is not reconciled."""

from __future__ import annotations

import asyncio

from sage_kube.errors import error_for
from sage_operator.core.controller import ControllerLoop, Key


async def test_a_failed_listing_is_retried_before_the_next_period() -> None:
    reconciled: asyncio.Queue[Key] = asyncio.Queue()
    calls = 0

    async def reconcile(key: Key) -> None:
        await reconciled.put(key)

    async def all_keys() -> list[Key]:
        nonlocal calls
        calls += 1
        if calls == 1:  # what an API server that is still starting answers
            raise error_for(429, {"reason": "TooManyRequests", "message": "storage is (re)initializing"})
        return [("ml", "qwen")]

    loop = ControllerLoop("test", reconcile, all_keys, workers=1, resync_seconds=3600)
    loop.start()
    try:
        assert await asyncio.wait_for(reconciled.get(), 30) == ("ml", "qwen")
        assert calls == 2
    finally:
        await loop.stop()


async def test_the_echo_of_an_own_status_write_is_not_reconciled() -> None:
    reconciled: list[Key] = []
    seen_b = asyncio.Event()

    async def reconcile(key: Key) -> None:
        reconciled.append(key)
        if key == ("ml", "b"):
            seen_b.set()

    async def no_keys() -> list[Key]:
        return []

    loop = ControllerLoop("test", reconcile, no_keys, workers=1, resync_seconds=3600)
    loop.wrote_status(("ml", "a"), "7")
    loop.changed("ml", "a", "7", deleted=False)  # the echo: ignored
    loop.changed("ml", "b", "3", deleted=False)  # queued after it, so it shows whether "a" ran
    loop.start()
    try:
        await asyncio.wait_for(seen_b.wait(), 30)
    finally:
        await loop.stop()
    assert reconciled == [("ml", "b")]
