"""Watch events into the registry, without an API server: the informers' handlers called directly
(the API-server path itself is covered by test_gateway_discovery.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sage_gateway.discovery.kubernetes import KubernetesDiscovery
from sage_gateway.registry import EngineRegistry, Route, Unavailable, Unknown
from sage_kube import KubeClient, KubeConfig


def engine(name: str = "echo") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml"}, "spec": {"model": "m"}}


def endpoint_slice(name: str, engine_name: str, *, ready: bool = True, address: str = "10.0.0.1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ml", "labels": {"sage.ai/engine": engine_name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
    }


@pytest.fixture
async def discovery() -> AsyncIterator[KubernetesDiscovery]:
    client = KubeClient(KubeConfig(server="https://127.0.0.1:1"))
    found = KubernetesDiscovery(EngineRegistry(), client, ["ml"])
    yield found
    await client.aclose()


def handlers(discovery: KubernetesDiscovery) -> tuple[Any, Any]:
    engines, slices = discovery.informers
    return engines.handler, slices.handler


async def test_engine_and_slice_events_shape_the_routes(discovery: KubernetesDiscovery) -> None:
    on_engine, on_slice = handlers(discovery)
    on_engine("ADDED", engine())
    assert isinstance(discovery.registry.resolve("echo"), Unavailable)
    on_slice("ADDED", endpoint_slice("echo-abc", "echo"))
    found = discovery.registry.resolve("echo")
    assert isinstance(found, Route)
    assert found.urls == ("http://10.0.0.1:8000",)
    on_slice("MODIFIED", endpoint_slice("echo-abc", "echo", ready=False))
    assert isinstance(discovery.registry.resolve("echo"), Unavailable)
    on_slice("MODIFIED", endpoint_slice("echo-abc", "echo"))
    on_slice("DELETED", endpoint_slice("echo-abc", "echo"))
    assert isinstance(discovery.registry.resolve("echo"), Unavailable)
    on_engine("DELETED", engine())
    assert isinstance(discovery.registry.resolve("echo"), Unknown)


async def test_a_slice_relabelled_to_another_engine_moves(discovery: KubernetesDiscovery) -> None:
    on_engine, on_slice = handlers(discovery)
    on_engine("ADDED", engine("a"))
    on_engine("ADDED", engine("b"))
    on_slice("ADDED", endpoint_slice("s", "a"))
    on_slice("MODIFIED", endpoint_slice("s", "b", address="10.0.0.2"))
    assert isinstance(discovery.registry.resolve("a"), Unavailable)
    found = discovery.registry.resolve("b")
    assert isinstance(found, Route)
    assert found.urls == ("http://10.0.0.2:8000",)


async def test_an_odd_object_is_skipped_not_fatal(discovery: KubernetesDiscovery) -> None:
    on_engine, on_slice = handlers(discovery)
    on_engine("ADDED", {"metadata": {"name": "x"}, "spec": {"aliases": 5}})  # not a list
    on_slice("ADDED", {"metadata": {"name": "s", "labels": {"sage.ai/engine": "x"}}, "endpoints": "nope"})
    on_engine("ADDED", engine())
    assert isinstance(discovery.registry.resolve("echo"), Unavailable)
