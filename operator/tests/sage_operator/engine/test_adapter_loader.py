"""Adapter loading decisions: what is loaded where, back-off per pod and adapter, reload after a
restart. The engine's HTTP API is replaced by a recording double here (the integration test uses
a real engine process)."""

from __future__ import annotations

from typing import Any

from sage_operator.engine.adapters import AdapterLoader
from sage_operator.engine.engine_client import EngineUnavailable


class RecordingEngines:
    """Test double of EngineClient: per-URL served models; loads can be made to fail."""

    def __init__(self) -> None:
        self.served: dict[str, set[str]] = {}
        self.loads: list[tuple[str, str, str]] = []
        self.failing: set[str] = set()
        self.tokens: set[str | None] = set()

    async def served_models(self, base_url: str) -> set[str]:
        if base_url in self.failing:
            raise EngineUnavailable("connection refused")
        return set(self.served.setdefault(base_url, {"base"}))

    async def load_adapter(self, base_url: str, name: str, path: str, token: str | None = None) -> None:
        self.loads.append((base_url, name, path))
        self.tokens.add(token)
        if base_url in self.failing:
            raise EngineUnavailable("connection refused")
        self.served[base_url].add(name)


def ready_pod(uid: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": uid},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_loads_missing_adapters_once_and_reports_those_loaded_everywhere() -> None:
    engines = RecordingEngines()
    loader = AdapterLoader(engines, port=9, clock=Clock())  # type: ignore[arg-type]
    pods = [ready_pod("p1", "10.0.0.1"), ready_pod("p2", "10.0.0.2")]
    result = await loader.sync(pods, {"bot": "/adapters/c/bot"}, "the-engines-token")
    assert result.loaded_everywhere == ["bot"]
    assert result.retry_in is None
    assert engines.tokens == {"the-engines-token"}  # every load carries the engine's credential
    assert sorted(engines.loads) == [
        ("http://10.0.0.1:9", "bot", "/adapters/c/bot"),
        ("http://10.0.0.2:9", "bot", "/adapters/c/bot"),
    ]
    await loader.sync(pods, {"bot": "/adapters/c/bot"})
    assert len(engines.loads) == 2  # idempotent: nothing reloaded
    engines.served["http://10.0.0.2:9"] = {"base"}  # p2's container restarted
    result = await loader.sync(pods, {"bot": "/adapters/c/bot"})
    assert engines.loads[-1] == ("http://10.0.0.2:9", "bot", "/adapters/c/bot")
    assert result.loaded_everywhere == ["bot"]


async def test_failures_back_off_per_pod_and_only_healthy_pods_count() -> None:
    engines, clock = RecordingEngines(), Clock()
    loader = AdapterLoader(engines, port=9, max_backoff=4, clock=clock)  # type: ignore[arg-type]
    engines.served["http://10.0.0.1:9"] = {"base"}
    engines.failing.add("http://10.0.0.1:9")
    pods = [ready_pod("p1", "10.0.0.1")]
    waits = []
    for _ in range(5):
        result = await loader.sync(pods, {"bot": "/b"})
        assert result.loaded_everywhere == []
        assert result.retry_in is not None
        waits.append(result.retry_in)
        clock.now += result.retry_in
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0]
    engines.failing.clear()
    result = await loader.sync(pods, {"bot": "/b"})
    assert (result.loaded_everywhere, result.retry_in) == (["bot"], None)


async def test_a_failed_load_is_not_retried_before_its_back_off() -> None:
    engines, clock = RecordingEngines(), Clock()
    loader = AdapterLoader(engines, port=9, clock=clock)  # type: ignore[arg-type]
    url = "http://10.0.0.1:9"
    engines.served[url] = {"base"}
    original = engines.load_adapter

    async def refuse(base_url: str, name: str, path: str, token: str | None = None) -> None:
        engines.loads.append((base_url, name, path))
        raise EngineUnavailable("adapter files not ready")

    engines.load_adapter = refuse  # type: ignore[method-assign]
    pods = [ready_pod("p1", "10.0.0.1")]
    first = await loader.sync(pods, {"bot": "/b"})
    await loader.sync(pods, {"bot": "/b"})  # within the back-off: no new attempt
    assert len(engines.loads) == 1
    assert first.retry_in == 0.5
    engines.load_adapter = original  # type: ignore[method-assign]
    clock.now += 0.5
    assert (await loader.sync(pods, {"bot": "/b"})).loaded_everywhere == ["bot"]
