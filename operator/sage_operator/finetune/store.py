"""The FinetuneJob controller's contact with the Kubernetes API (through sage_kube)."""

from __future__ import annotations

import logging
from typing import Any

from sage_api import names
from sage_kube import ApiError, KubeClient, NotFound, resource_path

log = logging.getLogger(__name__)

_PLURALS = {
    ("batch/v1", "Job"): "jobs",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
}


def finetune_path(namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path(names.API_VERSION, names.FINETUNE_PLURAL, namespace, name, subresource)


def engine_path(namespace: str | None, name: str | None = None) -> str:
    return resource_path(names.API_VERSION, names.ENGINE_PLURAL, namespace, name)


class FinetuneStore:
    """FinetuneJobs, their Jobs, and the engines they pause, as the API server has them."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(path)
        except NotFound:
            return None

    async def get_finetunejob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(finetune_path(namespace, name))

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(resource_path("batch/v1", "jobs", namespace, name))

    async def list_finetunejobs(self, namespaces: list[str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        scopes: list[str | None] = list(namespaces) or [None]
        for namespace in scopes:
            items += (await self.kube.list(finetune_path(namespace))).get("items") or []
        return items

    async def list_engines(self, namespace: str | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.kube.list(engine_path(namespace))).get("items") or []
        return items

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        plural = _PLURALS[(manifest["apiVersion"], manifest["kind"])]
        metadata = manifest["metadata"]
        path = resource_path(manifest["apiVersion"], plural, metadata["namespace"], metadata["name"])
        return await self.kube.apply(path, manifest, force=True)

    async def set_job_suspended(self, namespace: str, name: str, *, suspended: bool) -> dict[str, Any]:
        path = resource_path("batch/v1", "jobs", namespace, name)
        return await self.kube.patch(path, {"spec": {"suspend": suspended}})

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.kube.patch(finetune_path(namespace, name, "status"), {"status": status})

    async def patch_engine(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self.kube.patch(engine_path(namespace, name), patch)

    async def add_engine_adapter(self, namespace: str, engine: str, adapter: dict[str, Any]) -> bool:
        """Adds `adapter` to the engine's spec.adapters unless one of that name is there. Uses a
        JSON patch guarded by the resourceVersion read, so concurrent edits are never lost."""
        current = await self._get(engine_path(namespace, engine))
        if current is None:
            return False
        adapters = current["spec"].get("adapters")
        if any(a.get("name") == adapter["name"] for a in adapters or []):
            return True
        version = current["metadata"]["resourceVersion"]
        operations: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
        if adapters is None:
            operations.append({"op": "add", "path": "/spec/adapters", "value": [adapter]})
        else:
            operations.append({"op": "add", "path": "/spec/adapters/-", "value": adapter})
        await self.kube.patch(engine_path(namespace, engine), operations, patch_type="json")
        return True

    async def post_event(self, event: dict[str, Any]) -> None:
        try:
            await self.kube.create(resource_path("v1", "events", event["metadata"]["namespace"]), event)
        except ApiError as error:
            log.warning("could not post event %s: %s", event.get("reason"), error)
