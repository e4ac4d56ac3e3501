"""List + watch one resource into an in-memory cache, the way client-go's informers do.

Lists once, then watches from the list's resourceVersion with bookmarks; resumes from the last
resourceVersion when a watch ends; relists on 410 Gone (reporting objects that vanished meanwhile
as deletions); backs off on connection errors. Each change is handed to a callback.

It never stops on its own: an error it did not expect (a body it cannot read, a bug) is logged
with its traceback and answered with a fresh list after the backoff, as client-go's reflector
does, so that one odd response cannot leave a gateway or operator blind until it is restarted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from sage_kube.client import KubeClient
from sage_kube.errors import ApiError, Gone, Unreachable

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Handler = Callable[[EventType, dict[str, Any]], None]

log = logging.getLogger(__name__)


def object_key(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"


@dataclass
class Informer:
    """Keeps `cache` equal to the server's set of objects at `path` and calls `handler` on changes."""

    client: KubeClient
    path: str
    handler: Handler
    _: KW_ONLY
    label_selector: str | None = None
    watch_timeout_seconds: int = 300
    max_backoff: float = 5.0
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    resource_version: str = ""

    async def _relist(self) -> None:
        listing = await self.client.list(self.path, label_selector=self.label_selector)
        fresh = {object_key(item): item for item in listing.get("items") or []}
        for key in set(self.cache) - set(fresh):
            self.handler("DELETED", self.cache.pop(key))
        for key, item in fresh.items():
            kind: EventType = "MODIFIED" if key in self.cache else "ADDED"
            self.cache[key] = item
            self.handler(kind, item)
        self.resource_version = str(listing.get("metadata", {}).get("resourceVersion", ""))
        self.synced.set()

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj: dict[str, Any] = event.get("object") or {}
        version = obj.get("metadata", {}).get("resourceVersion")
        if version:
            self.resource_version = str(version)
        if kind == "BOOKMARK":
            return
        key = object_key(obj)
        if kind == "DELETED":
            self.cache.pop(key, None)
            self.handler("DELETED", obj)
        elif kind in ("ADDED", "MODIFIED"):
            self.cache[key] = obj
            self.handler(kind, obj)

    async def run(self) -> None:
        """Runs until cancelled."""
        backoff = 0.1
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for event in self.client.watch(
                    self.path,
                    resource_version=self.resource_version,
                    label_selector=self.label_selector,
                    timeout_seconds=self.watch_timeout_seconds,
                ):
                    self._apply(event)
                backoff = 0.1
            except Gone:
                log.info("watch of %s expired (410); relisting", self.path)
                need_list = True
            except (ApiError, Unreachable, ValueError) as error:
                log.warning("watch of %s failed: %s; retrying in %.1fs", self.path, error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:
                log.exception("watch of %s failed unexpectedly; relisting in %.1fs", self.path, backoff)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
