"""The operator's only contact with the Kubernetes API (through sage_kube): read engines, watch
and cache their children (Deployments, Services, Pods selected server-side by the `sage.ai/engine`
label), server-side apply children, write status, post Events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sage_api import names
from sage_kube import ApiError, KubeClient, NotFound, resource_path
from sage_kube.informer import EventType, Informer

FIELD_MANAGER = names.MANAGED_BY
log = logging.getLogger(__name__)

_PLURALS = {("apps/v1", "Deployment"): "deployments", ("v1", "Service"): "services", ("v1", "Event"): "events"}


def engine_path(namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path(names.API_VERSION, names.ENGINE_PLURAL, namespace, name, subresource)


class EngineStore:
    """LLMEngines and their children as the API server has them."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def get_engine(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(engine_path(namespace, name))
        except NotFound:
            return None

    async def list_engine_keys(self, namespaces: list[str]) -> list[tuple[str, str]]:
        """Every engine in the watched namespaces (all when the list is empty)."""
        scopes: list[str | None] = list(namespaces) or [None]  # None: every namespace
        listings = [await self.kube.list(engine_path(scope)) for scope in scopes]
        return [
            (item["metadata"]["namespace"], item["metadata"]["name"])
            for listing in listings
            for item in listing.get("items") or []
        ]

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with force: the operator owns every field it renders."""
        plural = _PLURALS[(manifest["apiVersion"], manifest["kind"])]
        metadata = manifest["metadata"]
        path = resource_path(manifest["apiVersion"], plural, metadata["namespace"], metadata["name"])
        return await self.kube.apply(path, manifest, force=True)

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> str | None:
        """Writes the status; returns the engine's new resourceVersion (None: deleted meanwhile,
        it needs no status)."""
        try:
            updated = await self.kube.patch(engine_path(namespace, name, "status"), {"status": patch})
        except NotFound:
            log.info("%s/%s was deleted before its status was written", namespace, name)
            return None
        return str((updated.get("metadata") or {}).get("resourceVersion") or "") or None

    async def post_event(self, event: dict[str, Any]) -> None:
        """Events are advisory: a failure to post one is logged, never fatal."""
        try:
            await self.kube.create(resource_path("v1", "events", event["metadata"]["namespace"]), event)
        except ApiError as error:
            log.warning("could not post event %s: %s", event.get("reason"), error)


CHILD_KINDS = (("apps/v1", "deployments"), ("v1", "services"), ("v1", "pods"))


class ChildWatch:
    """Every Deployment, Service and Pod labelled `sage.ai/engine` in the watched namespaces, listed
    and watched (sage_kube Informers) into memory. Each change calls `on_change(namespace, engine)`."""

    def __init__(self, kube: KubeClient, namespaces: list[str], on_change: Callable[[str, str], None]) -> None:
        self._on_change = on_change
        scopes: list[str | None] = list(namespaces) or [None]  # None: every namespace
        self._informers: dict[str, list[Informer]] = {
            plural: [self._informer(kube, resource_path(version, plural, scope)) for scope in scopes]
            for version, plural in CHILD_KINDS
        }
        # FinetuneJobs hand adapters to engines: their changes (a job that will serve an engine,
        # a job that succeeded) concern the engine they name.
        self._finetunejobs = [
            Informer(kube, resource_path(names.API_VERSION, names.FINETUNE_PLURAL, scope), self._finetune_changed)
            for scope in scopes
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def _informer(self, kube: KubeClient, path: str) -> Informer:
        return Informer(kube, path, self._changed, label_selector=names.LABEL_ENGINE)

    def _changed(self, _: EventType, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        engine = (metadata.get("labels") or {}).get(names.LABEL_ENGINE)
        if engine and metadata.get("namespace"):
            self._on_change(metadata["namespace"], engine)

    def _finetune_changed(self, _: EventType, obj: dict[str, Any]) -> None:
        namespace = (obj.get("metadata") or {}).get("namespace")
        engine = ((obj.get("spec") or {}).get("serve") or {}).get("engine")
        if namespace and engine:
            self._on_change(namespace, engine)

    def finetunejobs(self, namespace: str) -> list[dict[str, Any]]:
        return [
            job
            for informer in self._finetunejobs
            for job in informer.cache.values()
            if job["metadata"].get("namespace") == namespace
        ]

    async def start(self) -> None:
        """Starts watching and returns once every cache holds the server's current objects."""
        informers = [informer for group in self._informers.values() for informer in group] + self._finetunejobs
        self._tasks = [asyncio.create_task(informer.run(), name=f"watch {informer.path}") for informer in informers]
        await asyncio.gather(*(informer.synced.wait() for informer in informers))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        for informer in self._informers[plural]:
            if (found := informer.cache.get(f"{namespace}/{name}")) is not None:
                return found
        return None

    def pods(self, namespace: str, engine: str) -> list[dict[str, Any]]:
        return [
            pod
            for informer in self._informers["pods"]
            for pod in informer.cache.values()
            if pod["metadata"].get("namespace") == namespace
            and (pod["metadata"].get("labels") or {}).get(names.LABEL_ENGINE) == engine
        ]

    def pod_uids(self) -> set[str]:
        """Every engine pod that exists (in the watched namespaces)."""
        return {
            str(pod["metadata"].get("uid")) for informer in self._informers["pods"] for pod in informer.cache.values()
        }
