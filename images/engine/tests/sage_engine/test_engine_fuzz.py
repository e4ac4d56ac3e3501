"""Generated requests, valid and invalid, straight at a real engine process (deterministic
backend) from its own OpenAPI description: not one 5xx, an error envelope on every refusal, no
cut stream, and the engine still serving after."""

from __future__ import annotations

import httpx
import pytest

from sage_harness.engines import EngineProcess
from sage_harness.fuzz import fuzz
from sage_wire.openapi import bounded, openai_api

pytestmark = pytest.mark.engine

EXAMPLES = 1700
"""Per operation and mode: 3 POST routes x 2 modes x 1,700 = 10,200 requests, plus /v1/models (the
same cases the gateway's run sends on those routes: generated once, cached)."""


def test_ten_thousand_generated_requests_get_no_server_error(deterministic_engine: EngineProcess) -> None:
    base = deterministic_engine.base_url
    described = httpx.get(f"{base}/openapi.json").json()
    assert "/v1/messages" not in described["paths"]  # the gateway translates those
    report = fuzz(base, bounded(openai_api(models=["echo"], max_tokens=32, anthropic=False)), examples=EXAMPLES)
    print(report.summary())
    assert report.failures == []
    assert report.requests >= 10_000
    assert report.statuses[200] > 0
    reply = httpx.post(f"{base}/v1/embeddings", json={"model": "echo", "input": "still there?"})
    assert reply.status_code == 200
