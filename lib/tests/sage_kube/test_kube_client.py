"""sage_kube against the real API server: CRUD, server-side apply, errors, watch and informers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl
from sage_kube import Conflict, KubeClient, NotFound, resource_path
from sage_kube.errors import error_for
from sage_kube.informer import Informer


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_env(str(control_plane.kubeconfig)) as client:
        yield client


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_paths() -> None:
    assert resource_path("v1", "pods", "ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert resource_path("apps/v1", "deployments") == "/apis/apps/v1/deployments"
    assert (
        resource_path("sage.ai/v1alpha1", "llmengines", "ml", "q", "status")
        == "/apis/sage.ai/v1alpha1/namespaces/ml/llmengines/q/status"
    )


async def test_crud_and_errors(kube: KubeClient, namespace: str) -> None:
    collection = resource_path("v1", "configmaps", namespace)
    created = await kube.create(collection, configmap("a", k="1"))
    assert created["metadata"]["uid"]
    with pytest.raises(Conflict) as conflict:
        await kube.create(collection, configmap("a"))
    assert "already exists" in conflict.value.message
    await kube.patch(f"{collection}/a", {"data": {"k": "2"}})
    assert (await kube.get(f"{collection}/a"))["data"] == {"k": "2"}
    listing = await kube.list(collection, field_selector="metadata.name=a")
    assert [item["metadata"]["name"] for item in listing["items"]] == ["a"]
    await kube.delete(f"{collection}/a")
    with pytest.raises(NotFound):
        await kube.get(f"{collection}/a")


async def test_server_side_apply_converges(kube: KubeClient, namespace: str, kubectl: Kubectl) -> None:
    path = resource_path("v1", "configmaps", namespace, "applied")
    await kube.apply(path, configmap("applied", a="1"))
    kubectl("patch", "configmap", "applied", "-n", namespace, "--type=merge", "-p", '{"data": {"a": "edited"}}')
    await kube.apply(path, configmap("applied", a="1"))
    assert (await kube.get(path))["data"]["a"] == "1"


async def test_informer_sees_adds_updates_deletes(kube: KubeClient, namespace: str, kubectl: Kubectl) -> None:
    events: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()

    def handler(kind: str, obj: dict[str, Any]) -> None:
        events.put_nowait((kind, obj["metadata"]["name"], (obj.get("data") or {}).get("k", "")))

    kubectl("create", "configmap", "before", "-n", namespace, "--from-literal=k=0")
    informer = Informer(kube, resource_path("v1", "configmaps", namespace), handler, label_selector=None)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 30)
        seen = [await asyncio.wait_for(events.get(), 30) for _ in range(events.qsize())]
        assert ("ADDED", "before", "0") in seen
        kubectl("create", "configmap", "later", "-n", namespace, "--from-literal=k=1")
        assert await _next_for(events, "later") == ("ADDED", "later", "1")
        kubectl("patch", "configmap", "later", "-n", namespace, "--type=merge", "-p", '{"data": {"k": "2"}}')
        assert await _next_for(events, "later") == ("MODIFIED", "later", "2")
        kubectl("delete", "configmap", "later", "-n", namespace)
        assert (await _next_for(events, "later"))[0] == "DELETED"
        assert "later" not in {key.split("/")[1] for key in informer.cache}
    finally:
        task.cancel()


async def test_informer_relist_reports_deletions_missed_while_away(kube: KubeClient, namespace: str) -> None:
    deleted: list[str] = []
    collection = resource_path("v1", "configmaps", namespace)
    await kube.create(collection, configmap("gone"))
    informer = Informer(
        kube, collection, lambda kind, obj: deleted.append(obj["metadata"]["name"]) if kind == "DELETED" else None
    )
    await informer._relist()
    await kube.delete(f"{collection}/gone")
    await informer._relist()  # what a 410 Gone leads to
    assert deleted == ["gone"]


class OneBadWatch:
    """The real client, except that its first watch fails the way a body we cannot read would."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.failed = False

    async def list(self, path: str, **options: Any) -> dict[str, Any]:
        return await self.client.list(path, **options)

    async def watch(self, path: str, **options: Any) -> AsyncIterator[dict[str, Any]]:
        if not self.failed:
            self.failed = True
            raise KeyError("a watch event without 'object'")
        async for event in self.client.watch(path, **options):
            yield event


async def test_informer_recovers_from_an_unexpected_error(kube: KubeClient, namespace: str) -> None:
    arrived = asyncio.Event()
    collection = resource_path("v1", "configmaps", namespace)
    client = OneBadWatch(kube)

    def handler(kind: str, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == "after-the-error":
            arrived.set()

    informer = Informer(client, collection, handler)  # type: ignore[arg-type]
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 30)
        await kube.create(collection, configmap("after-the-error"))
        await asyncio.wait_for(arrived.wait(), 30)
        assert client.failed
        assert not task.done()
    finally:
        task.cancel()


async def _next_for(events: asyncio.Queue[tuple[str, str, str]], name: str) -> tuple[str, str, str]:
    while True:
        event = await asyncio.wait_for(events.get(), 30)
        if event[1] == name:
            return event


def test_a_terminating_namespace_is_recognised_from_the_status_causes() -> None:
    body = {
        "kind": "Status",
        "reason": "Forbidden",
        "message": 'services "x" is forbidden: unable to create new content in namespace ml (being terminated)',
        "details": {"causes": [{"type": "NamespaceTerminating", "field": "metadata.namespace"}]},
    }
    assert error_for(403, body).namespace_terminating
    assert not error_for(403, {"reason": "Forbidden", "message": "quota"}).namespace_terminating
