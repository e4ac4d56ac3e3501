"""The operator's only contact with the Kubernetes API (through sage_kube): read engines and their
pods, server-side apply children, write status, post Events."""

from __future__ import annotations

import logging
from typing import Any

from sage_api import names
from sage_kube import ApiError, KubeClient, NotFound, resource_path
from sage_operator.render import selector_string

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
        listings = [await self.kube.list(engine_path(ns)) for ns in namespaces or [None]]  # type: ignore[list-item]
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

    async def list_engine_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        listing = await self.kube.list(resource_path("v1", "pods", namespace), label_selector=selector_string(name))
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self.kube.patch(engine_path(namespace, name, "status"), {"status": patch})

    async def post_event(self, event: dict[str, Any]) -> None:
        """Events are advisory: a failure to post one is logged, never fatal."""
        try:
            await self.kube.create(resource_path("v1", "events", event["metadata"]["namespace"]), event)
        except ApiError as error:
            log.warning("could not post event %s: %s", event.get("reason"), error)
