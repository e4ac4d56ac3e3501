"""An adapter goes only to replicas that serve it: two engine processes behind one engine, the
adapter loaded on one of them (as when a hand-off has reached one replica so far). Clients never
see the other replica's 404; once it loads the adapter too, it gets its share again."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.waiting import wait_until

pytestmark = pytest.mark.engine


def load(engine: EngineProcess, name: str) -> None:
    response = httpx.post(
        f"{engine.base_url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": f"/a/{name}"}
    )
    assert response.status_code == 200, response.text


def ask(gateway: GatewayProcess, model: str, text: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body)


def misses(gateway: GatewayProcess) -> float:
    found = re.search(
        r'^sage_gateway_adapter_misses_total\{model="bot"\} (\S+)$',
        httpx.get(f"{gateway.base_url}/metrics").text,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


def test_an_adapter_goes_only_to_replicas_that_serve_it(engine_factory: Callable[..., EngineProcess]) -> None:
    with_adapter, without = engine_factory("deterministic", "echo"), engine_factory("deterministic", "echo")
    load(with_adapter, "bot")
    engines = [
        {
            "name": "echo",
            "urls": [with_adapter.base_url, without.base_url],
            "adapters": ["bot"],
            "policy": "least-inflight",
        }
    ]
    env = {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(engines),
        "SAGE_GATEWAY_ADAPTER_MISS_SECONDS": "1",
    }
    with GatewayProcess(env=env) as gateway:
        answers = [ask(gateway, "bot", f"question {index}") for index in range(12)]
        assert [answer.status_code for answer in answers] == [200] * 12, [
            a.text for a in answers if a.status_code != 200
        ]
        assert {answer.headers["x-sage-replica"] for answer in answers} == {with_adapter.base_url}
        assert all(answer.json()["choices"][0]["message"]["content"].startswith("[bot]") for answer in answers)
        assert misses(gateway) >= 1  # the other replica was asked, and passed over after its 404
        # The base model still uses both replicas.
        base = Counter(ask(gateway, "echo", f"q{index}").headers["x-sage-replica"] for index in range(6))
        assert set(base) == {with_adapter.base_url, without.base_url}
        # Once the second replica has the adapter, it serves it again (after the miss expires).
        load(without, "bot")
        wait_until(
            lambda: ask(gateway, "bot", "again").headers["x-sage-replica"] == without.base_url,
            timeout=30,
            what="the second replica serving the adapter",
        )


def test_an_adapter_no_replica_serves_is_the_replicas_own_404(engine_factory: Callable[..., EngineProcess]) -> None:
    first, second = engine_factory("deterministic", "echo"), engine_factory("deterministic", "echo")
    engines = [{"name": "echo", "urls": [first.base_url, second.base_url], "adapters": ["bot"]}]
    env = {"SAGE_GATEWAY_DISCOVERY": "static", "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(engines)}
    with GatewayProcess(env=env) as gateway:
        answer = ask(gateway, "bot", "hello")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "model_not_found"
