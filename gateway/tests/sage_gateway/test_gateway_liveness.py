"""Liveness follows discovery: a discovery that ended fails /healthz, so the kubelet restarts the
gateway instead of leaving it unready for ever with a green liveness probe."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sage_gateway import app as gateway_app
from sage_gateway.registry import EngineRegistry
from sage_gateway.settings import GatewaySettings


class DiscoveryThatDies:
    """Syncs, then fails the way a bug in a watch loop would."""

    def __init__(self) -> None:
        self.synced = asyncio.Event()
        self.release = asyncio.Event()
        self.dying = asyncio.Event()

    async def run(self) -> None:
        self.synced.set()
        await self.release.wait()
        self.dying.set()  # its waiters run after this step, which ends in the raise below
        raise RuntimeError("the watch loop broke")


async def test_a_dead_discovery_fails_liveness_and_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    source = DiscoveryThatDies()

    def make_discovery(settings: GatewaySettings, registry: EngineRegistry) -> DiscoveryThatDies:
        return source

    monkeypatch.setattr(gateway_app, "make_discovery", make_discovery)
    app = gateway_app.create_app(GatewaySettings(discovery="static", static_engines="engines: []"))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        await asyncio.wait_for(source.synced.wait(), 10)
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        source.release.set()
        await asyncio.wait_for(source.dying.wait(), 10)
        health = await client.get("/healthz")
        assert health.status_code == 503
        error = health.json()["error"]
        assert error["code"] == "discovery_stopped"
        assert "the watch loop broke" in error["message"]
        assert (await client.get("/readyz")).status_code == 503
