"""Kubernetes discovery: LLMEngines and the EndpointSlices of their Services, watched.

Two informers per namespace (or one pair for the whole cluster) keep the registry equal to what
the API server holds: list once, then watch with bookmarks, resume from the last resourceVersion,
relist on 410 (all in `sage_kube.informer`). Watch events arrive as they happen, so a replica
that turns ready is routable, and one that goes away stops getting requests, as soon as the API
server says so. Slices are selected by the `sage.ai/engine` label, which the EndpointSlice
controller copies from the engine's Service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sage_api.names import ENGINE_PLURAL, LABEL_ENGINE, VERSION
from sage_api.names import GROUP as SAGE_GROUP
from sage_api.ports import SagePorts
from sage_gateway.discovery.model import endpoints_from_slice, engine_from_object, slice_engine_key
from sage_gateway.registry import EngineRegistry
from sage_kube import KubeClient, resource_path
from sage_kube.informer import EventType, Handler, Informer, object_key

log = logging.getLogger(__name__)

ENDPOINTSLICE_API = "discovery.k8s.io/v1"


class KubernetesDiscovery:
    """Feeds `registry` from informers on LLMEngines and engine EndpointSlices."""

    def __init__(self, registry: EngineRegistry, client: KubeClient, namespaces: list[str]) -> None:
        self.registry = registry
        self.client = client
        self.synced = asyncio.Event()
        self._slice_owner: dict[str, str] = {}
        self.informers: list[Informer] = []
        scopes: list[str | None] = list(namespaces) or [None]
        for namespace in scopes:
            engines = resource_path(f"{SAGE_GROUP}/{VERSION}", ENGINE_PLURAL, namespace)
            slices = resource_path(ENDPOINTSLICE_API, "endpointslices", namespace)
            self.informers.append(Informer(client, engines, self._guarded(self._on_engine)))
            on_slice = self._guarded(self._on_slice)
            self.informers.append(Informer(client, slices, on_slice, label_selector=LABEL_ENGINE))

    def _guarded(self, handler: Handler) -> Handler:
        """One odd object must not stop the watch: log it and keep going."""

        def handle(event: EventType, obj: dict[str, Any]) -> None:
            try:
                handler(event, obj)
            except Exception:
                log.exception("could not apply %s of %s; skipped", event, object_key(obj))

        return handle

    def _on_engine(self, event: EventType, obj: dict[str, Any]) -> None:
        engine = engine_from_object(obj)
        if event == "DELETED":
            self.registry.remove_engine(engine.key)
            log.info("engine %s removed", engine.key)
        else:
            self.registry.upsert_engine(engine)
            log.info("engine %s serves %s (phase %s)", engine.key, ", ".join(engine.names), engine.phase)

    def _on_slice(self, event: EventType, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        owner = slice_engine_key(obj)
        previous = self._slice_owner.pop(key, None)
        if previous is not None and previous != owner:
            self.registry.remove_endpoints(previous, key)
        if owner is None:
            return
        if event == "DELETED":
            self.registry.remove_endpoints(owner, key)
            log.info("endpoints of %s from %s removed", owner, key)
            return
        self._slice_owner[key] = owner
        endpoints = endpoints_from_slice(obj, SagePorts.ENGINE)
        self.registry.set_endpoints(owner, key, endpoints)
        ready = sum(endpoint.ready for endpoint in endpoints)
        log.info("endpoints of %s from %s: %d ready of %d", owner, key, ready, len(endpoints))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for informer in self.informers:
                group.create_task(informer.run())
            await asyncio.gather(*(informer.synced.wait() for informer in self.informers))
            self.synced.set()
            log.info("kubernetes discovery synced: %d engines", len(self.registry.engines()))

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
