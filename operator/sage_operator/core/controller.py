"""One controller's loop, the same for every kind: every trigger (a watch event of the object or
of a child, a retry, the resync timer) only queues the object's key; the work queue coalesces
them and reconciles each key on one worker at a time; the resync loop queues every key at least
every period, so drift no event reported (a missed event, an edit while the operator was down) is
corrected; and the watch echo of the controller's own status write is not reconciled again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from sage_kube import ApiError
from sage_operator.core.workqueue import WorkQueue

Key = tuple[str, str]
"""(namespace, name)"""
RESYNC_RETRY_SECONDS = 1.0
log = logging.getLogger(__name__)


class ControllerLoop:
    def __init__(
        self,
        name: str,
        reconcile: Callable[[Key], Awaitable[None]],
        all_keys: Callable[[], Awaitable[Iterable[Key]]],
        *,
        workers: int,
        resync_seconds: float,
    ) -> None:
        self.name = name
        self._all_keys = all_keys
        self._resync_seconds = resync_seconds
        self._reconcile = reconcile
        self.queue: WorkQueue[Key] = WorkQueue(self._reconcile_unless_terminating, workers=workers, told=(ApiError,))
        self._resync_task: asyncio.Task[None] | None = None
        self._own_writes: dict[Key, str] = {}
        """The resourceVersion each object got from our last status write."""

    async def _reconcile_unless_terminating(self, key: Key) -> None:
        """A namespace being deleted refuses every new object: its contents go with it, so there is
        nothing to converge and nothing to retry."""
        try:
            await self._reconcile(key)
        except ApiError as error:
            if not error.namespace_terminating:
                raise
            log.debug("%s %s/%s: the namespace is being deleted; nothing to do", self.name, *key)

    def start(self) -> None:
        self.queue.start()
        self._resync_task = asyncio.create_task(self._resync_forever(), name=f"{self.name}-resync")

    async def stop(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            await asyncio.gather(self._resync_task, return_exceptions=True)
        await self.queue.stop()

    def enqueue(self, namespace: str, name: str) -> None:
        self.queue.add((namespace, name))

    def enqueue_after(self, key: Key, delay: float) -> None:
        self.queue.add_after(key, delay)

    def changed(self, namespace: str, name: str, resource_version: str | None, *, deleted: bool) -> None:
        """A watch event of the reconciled kind itself."""
        key = (namespace, name)
        if deleted:
            self._own_writes.pop(key, None)
        elif resource_version is not None and self._own_writes.get(key) == resource_version:
            return
        self.queue.add(key)

    def wrote_status(self, key: Key, resource_version: str | None) -> None:
        """The status write that gave the object `resource_version`: its echo needs no reconcile."""
        if resource_version is not None:
            self._own_writes[key] = resource_version

    async def _resync_forever(self) -> None:
        """Queues every key now (an operator that starts also catches up on what happened while it
        was down), then every `resync_seconds`. A failed listing is tried again soon, backing off
        up to the period: an API server that is still starting answers 429 for a few seconds."""
        retry = RESYNC_RETRY_SECONDS
        while True:
            try:
                for key in await self._all_keys():
                    self.queue.add(key)
            except ApiError as error:
                log.warning("%s: resync listing failed (%s); retrying in %.0fs", self.name, error, retry)
            except Exception:
                log.exception("%s: resync listing failed; retrying in %.0fs", self.name, retry)
            else:
                retry = RESYNC_RETRY_SECONDS
                await asyncio.sleep(self._resync_seconds)
                continue
            await asyncio.sleep(min(retry, self._resync_seconds))
            retry = min(retry * 2, self._resync_seconds)
