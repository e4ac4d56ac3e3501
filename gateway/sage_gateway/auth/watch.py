"""APIKey objects watched in one namespace into the key ring: a new key works, and a revoked one
stops, as soon as the API server says so."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sage_api.names import API_VERSION, APIKEY
from sage_gateway.auth.keys import KeyRing, policy_from_object
from sage_kube import KubeClient, resource_path
from sage_kube.informer import EventType, Informer, object_key

log = logging.getLogger(__name__)


class KeyWatch:
    """Keeps the ring equal to the APIKey objects of one namespace (the gateway's own: its Role
    reads apikeys there and nothing else)."""

    def __init__(
        self, ring: KeyRing, client: KubeClient, namespace: str, on_removed: Callable[[str], None] | None = None
    ) -> None:
        self.ring = ring
        self.client = client
        self.on_removed = on_removed
        path = resource_path(API_VERSION, APIKEY.plural, namespace)
        self.informer = Informer(client, path, self._on_key)
        self.synced = self.informer.synced

    def _on_key(self, event: EventType, obj: dict[str, Any]) -> None:
        name = object_key(obj)
        if event == "DELETED":
            self.ring.remove(name)
            if self.on_removed is not None:
                self.on_removed(name)
            log.info("API key %s revoked", name)
            return
        try:
            policy = policy_from_object(obj)
        except ValueError as error:
            self.ring.remove(name)  # an unreadable object must not leave its old policy in force
            log.warning("%s; the key is refused", error)
            return
        self.ring.upsert(policy)
        log.info("API key %s accepted (%d keys)", name, len(self.ring))

    async def run(self) -> None:
        await self.informer.run()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
