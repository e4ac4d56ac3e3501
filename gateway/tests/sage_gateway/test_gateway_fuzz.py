"""Generated requests, valid and invalid, against a real gateway in front of a real engine: not
one 5xx, an error envelope on every refusal, no cut stream, and the gateway still serving after
(the engine's own run: images/engine/tests/sage_engine/test_engine_fuzz.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from sage_harness.engines import EngineProcess
from sage_harness.fuzz import fuzz
from sage_harness.gateway import GatewayProcess
from sage_wire.openapi import bounded, openai_api

pytestmark = pytest.mark.engine

EXAMPLES = 1700
"""Per operation and mode: 4 POST routes x 2 modes x 1,700 = 13,600 requests, plus /v1/models. The
cases are generated once and cached (sage_harness.fuzz); the engine's run shares its three routes'."""


@pytest.fixture(scope="module")
def gateway(deterministic_engine: EngineProcess) -> Iterator[GatewayProcess]:
    engines = [{"name": "echo", "urls": [deterministic_engine.base_url]}]
    env = {"SAGE_GATEWAY_DISCOVERY": "static", "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(engines)}
    with GatewayProcess(env=env) as process:
        yield process


def test_the_gateway_describes_its_api(gateway: GatewayProcess) -> None:
    described = httpx.get(f"{gateway.base_url}/openapi.json").json()
    assert set(described["paths"]) == {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/messages",
    }


def test_ten_thousand_generated_requests_get_no_server_error(gateway: GatewayProcess) -> None:
    report = fuzz(gateway.base_url, bounded(openai_api(models=["echo"], max_tokens=32)), examples=EXAMPLES)
    print(report.summary())
    assert report.failures == []
    assert report.requests >= 10_000
    assert report.statuses[200] > 0  # valid requests went through to the engine
    assert sum(count for status, count in report.statuses.items() if 400 <= status < 500) > 0
    reply = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "still there?"}]},
    )
    assert reply.json()["choices"][0]["message"]["content"] == "echo: still there?"
