"""Bounds that keep the gateway alive under load it cannot take: requests in flight and bytes held
for request bodies (with what parsing one costs), through a real gateway process in front of an
upstream that holds requests open. Over a bound: 503 with Retry-After, then normal service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sage_gateway.budget import PARSE_FACTOR, Budget, Held
from sage_gateway.settings import GatewaySettings
from sage_harness.gateway import GatedUpstream, GatewayProcess
from sage_wire.errors import WireError

pytestmark = pytest.mark.engine

KIB = 1024
BODY = 60 * KIB
BUFFERED = 3 * 1024 * KIB
# Requests of BODY bytes that can be held at once: each one arriving needs its body and its parse
# beside the bodies already held; one more than FITS does not fit.
FITS = (BUFFERED - BODY * (PARSE_FACTOR + 1)) // BODY + 1


def test_a_budget_refuses_what_would_cross_it_but_never_a_first_holder() -> None:
    budget = Budget(100, "things", retry_after=3)
    budget.take(250)  # alone, a holder may take more than the bound (the settings prevent it)
    with pytest.raises(WireError) as refused:
        budget.take(1)
    assert refused.value.status == 503
    assert refused.value.headers == {"Retry-After": "3"}
    assert "things" in refused.value.message
    budget.give(250)
    budget.take(100)
    assert budget.used == 100


def test_what_is_held_for_a_block_is_given_back_when_it_ends_even_by_an_error() -> None:
    budget = Budget(100, "things")
    with Held(budget, 60):
        assert budget.used == 60
        with pytest.raises(WireError), Held(budget, 50):
            pass  # refused on the way in: nothing more taken
        assert budget.used == 60
    assert budget.used == 0
    with pytest.raises(ValueError, match="parse failed"), Held(budget, 30):
        raise ValueError("parse failed")
    assert budget.used == 0


def test_settings_refuse_buffers_too_small_for_the_largest_body() -> None:
    with pytest.raises(ValueError, match="max_buffered_bytes"):
        GatewaySettings(max_body_bytes=4 * 1024 * KIB, max_buffered_bytes=8 * 1024 * KIB)


@pytest.fixture(scope="module")
def gateway(gated_upstream: GatedUpstream) -> Iterator[GatewayProcess]:
    env = {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": json.dumps([{"name": "gated", "urls": [gated_upstream.base_url]}]),
        "SAGE_GATEWAY_MAX_BODY_BYTES": str(64 * KIB),
        "SAGE_GATEWAY_MAX_BUFFERED_BYTES": str(BUFFERED),
        "SAGE_GATEWAY_MAX_INFLIGHT_REQUESTS": str(FITS + 4),
    }
    with GatewayProcess(env=env) as process:
        yield process


def held(size: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gated", "messages": [{"role": "user", "content": "x"}], "hold": True}
    if size:
        body["pad"] = "p" * (size - len(json.dumps(body)) - 10)
    return body


async def hold_open(http: httpx.AsyncClient, upstream: GatedUpstream, count: int, size: int) -> list[asyncio.Task[Any]]:
    tasks = []
    for _ in range(count):
        upstream.received.clear()
        tasks.append(asyncio.create_task(http.post("/v1/chat/completions", json=held(size))))
        await asyncio.wait_for(upstream.received.wait(), 10)
    return tasks


async def test_held_bodies_and_parsing_are_bounded_then_service_resumes(
    gateway: GatewayProcess, gated_upstream: GatedUpstream
) -> None:
    gated_upstream.reset()
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
        tasks = await hold_open(http, gated_upstream, FITS, BODY)
        refused = await http.post("/v1/chat/completions", json=held(BODY))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        assert "buffered request bytes" in refused.json()["error"]["message"]
        small = await http.post("/v1/chat/completions", json={**held(), "hold": False})
        assert small.status_code == 200  # a small body still fits beside them
        gated_upstream.release.set()
        assert [(await task).status_code for task in tasks] == [200] * FITS
        again = await http.post("/v1/chat/completions", json={**held(BODY), "hold": False})
        assert again.status_code == 200


async def test_requests_in_flight_are_bounded(gateway: GatewayProcess, gated_upstream: GatedUpstream) -> None:
    gated_upstream.reset()
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
        tasks = await hold_open(http, gated_upstream, FITS + 4, 0)
        refused = await http.post("/v1/chat/completions", json={**held(), "hold": False})
        assert refused.status_code == 503
        assert "requests in flight" in refused.json()["error"]["message"]
        gated_upstream.release.set()
        assert {(await task).status_code for task in tasks} == {200}
        assert (await http.post("/v1/chat/completions", json={**held(), "hold": False})).status_code == 200
