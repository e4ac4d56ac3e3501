"""Rate limits shared by gateway replicas through a real redis-server: the Lua admission decides
as the in-process rules do, two gateway processes share one key's budget, and when Redis stops
they keep serving under their own limits and say so (metric and log), then share again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sage_api.apikey import key_hash, new_key
from sage_gateway.auth.keys import KeyPolicy
from sage_gateway.auth.limiter import Limiter, LocalLimiter
from sage_gateway.auth.limits import openai_headers
from sage_gateway.auth.shared import RedisLimiter, connect
from sage_gateway.metrics import GatewayMetrics
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.redis_server import RedisServer
from sage_harness.waiting import wait_until
from sage_wire.errors import WireError

pytestmark = pytest.mark.engine

RPM = KeyPolicy("ns/rpm", "d1", requests_per_minute=3)
TPM = KeyPolicy("ns/tpm", "d2", tokens_per_minute=100)
OPEN = KeyPolicy("ns/open", "d3", max_concurrent=2)


async def scenario(limiter: Limiter) -> list[str]:
    """One sequence of admissions and endings; what each step answered."""
    seen: list[str] = []
    open_requests = []

    async def step(policy: KeyPolicy, prompt: int = 0) -> None:
        if isinstance(limiter, RedisLimiter):
            await limiter.drain()  # what ended is written back before the next admission
        try:
            admission = await limiter.acquire(policy, prompt, openai_headers)
        except WireError as error:
            seen.append(f"429 {error.limit_kind} {error.headers.get('Retry-After', '-')} {error.message[-40:]}")
            return
        open_requests.append(admission)
        told = {name.decode(): value.decode() for name, value in openai_headers(admission.readings)}
        seen.append(
            f"ok {told.get('x-ratelimit-remaining-requests', '')} {told.get('x-ratelimit-remaining-tokens', '')}"
        )

    for _ in range(4):
        await step(RPM)
    for prompt in (40, 40, 40, 500):
        await step(TPM, prompt)
    await step(OPEN)
    await step(OPEN)
    await step(OPEN)
    open_requests[-1].settle(None)
    await step(OPEN)
    open_requests[3].settle(100)  # a TPM request reserved 40, the engine said 100: 60 more taken
    await step(TPM, 1)
    return seen


async def test_the_shared_admission_decides_as_the_local_one(redis_server: RedisServer) -> None:
    local = await scenario(LocalLimiter())
    shared = RedisLimiter(connect(redis_server.url, 1.0), GatewayMetrics())
    try:
        in_redis = await scenario(shared)
    finally:
        await shared.aclose()
    assert in_redis == local
    assert local[3].startswith("429 requests")
    assert local[6].startswith("429 tokens")
    assert "the limit of 100 tokens" in local[7]
    assert local[10].startswith("429 requests") and "at once" in local[10]  # noqa: PT018
    assert local[-1].startswith("429 tokens")


def key_manifest(key: str) -> str:
    spec = {"keyHash": key_hash(key), "requestsPerMinute": 4}
    return json.dumps({"apiVersion": "sage.ai/v1alpha1", "kind": "APIKey", "metadata": {"name": "team"}, "spec": spec})


@pytest.fixture
def key() -> str:
    return new_key()


@pytest.fixture
def two_gateways(
    deterministic_engine: EngineProcess, redis_server: RedisServer, key: str, tmp_path: Path
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(key_manifest(key))
    env = {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": json.dumps([{"name": "echo", "urls": [deterministic_engine.base_url]}]),
        "SAGE_GATEWAY_AUTH": "api-keys",
        "SAGE_GATEWAY_API_KEYS_FILE": str(keys_file),
        "SAGE_GATEWAY_REDIS_URL": redis_server.url,
    }
    with GatewayProcess(env=env) as first, GatewayProcess(env=env) as second:
        yield first, second


def ask(gateway: GatewayProcess, key: str) -> httpx.Response:
    body: dict[str, Any] = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


def metric(gateway: GatewayProcess, name: str) -> float:
    text = httpx.get(f"{gateway.base_url}/metrics").text
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[-1])


def test_two_gateways_share_one_budget_and_degrade_honestly_without_redis(
    two_gateways: tuple[GatewayProcess, GatewayProcess], redis_server: RedisServer, key: str
) -> None:
    first, second = two_gateways
    statuses = [ask(gateway, key).status_code for gateway in (first, second, first, second, first, second)]
    assert statuses == [200, 200, 200, 200, 429, 429]  # 4 per minute in all, not 4 per gateway
    assert ask(second, key).headers["x-ratelimit-remaining-requests"] == "0"
    assert metric(first, "sage_gateway_shared_limits_up") == 1

    redis_server.stop()
    # Each replica now limits on its own (a fresh budget of 4 each); nothing fails for lack of Redis.
    alone = [ask(first, key).status_code for _ in range(5)]
    assert alone == [200, 200, 200, 200, 429]
    assert metric(first, "sage_gateway_shared_limits_up") == 0
    assert metric(first, "sage_gateway_shared_limits_fallbacks_total") >= 5
    assert "shared rate limits unreachable" in first.log()

    redis_server.start()  # the same port, empty: the shared budget starts again
    wait_until(lambda: ask(second, key).status_code == 200 and metric(second, "sage_gateway_shared_limits_up") == 1,
               "the second gateway to share limits again", timeout=30)  # fmt: skip
    assert "reachable again" in second.log()
