"""SIGTERM with streams open, against a real gateway process: it turns unready and stops taking
connections at once, lets the streams in flight finish within its drain time, ends those that
outlive it with an error event in their protocol's shape, then exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from sage_harness.gateway import TRUNCATE, GatedUpstream, GatewayProcess

pytestmark = pytest.mark.engine

ROUTES = {
    "openai": (
        "/v1/chat/completions",
        {"model": "gated", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "gated", "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
    ),
}

# uvicorn re-raises the SIGTERM once it has shut down: the exit status of a clean drain.
EXITED = {0, -signal.SIGTERM}


@pytest.fixture
def gated(gated_upstream: GatedUpstream) -> GatedUpstream:
    gated_upstream.reset()
    return gated_upstream


def draining_gateway(upstream: GatedUpstream, seconds: float) -> GatewayProcess:
    engines = json.dumps([{"name": "gated", "urls": [upstream.base_url]}])
    env = {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": engines,
        "SAGE_GATEWAY_DRAIN_SECONDS": str(seconds),
    }
    return GatewayProcess(env=env)


async def refused(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as fresh:
            await fresh.get(url)
    except httpx.TransportError:
        return True
    return False


@contextlib.asynccontextmanager
async def streaming(gateway: GatewayProcess, protocol: str) -> AsyncIterator[AsyncIterator[str]]:
    """The lines of a streamed answer on `protocol`'s route."""
    path, body = ROUTES[protocol]
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", gateway.base_url + path, json=body) as response,
    ):
        yield response.aiter_lines()


async def first_chunk(lines: AsyncIterator[str]) -> None:
    async for line in lines:
        if "first" in line:
            return


@pytest.mark.parametrize("protocol", ROUTES)
async def test_a_stream_open_at_sigterm_finishes_and_no_new_connection_is_taken(
    gated: GatedUpstream, protocol: str
) -> None:
    with draining_gateway(gated, 30) as gateway:
        async with streaming(gateway, protocol) as lines:
            await first_chunk(lines)
            gateway.signal(signal.SIGTERM)
            for _ in range(100):
                if await refused(f"{gateway.base_url}/readyz"):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the gateway still takes connections after SIGTERM")
            gated.release.set()
            rest = "\n".join([line async for line in lines])
        assert "second" in rest  # the rest of the answer, after SIGTERM
        assert "error" not in rest
        assert ("data: [DONE]" if protocol == "openai" else "event: message_stop") in rest
        assert await asyncio.to_thread(gateway.wait_exit, 30) in EXITED
    assert "shutting down" in gateway.log()


@pytest.mark.parametrize("protocol", ROUTES)
async def test_a_stream_that_outlives_the_drain_ends_with_an_error_event(gated: GatedUpstream, protocol: str) -> None:
    with draining_gateway(gated, 1) as gateway:
        async with streaming(gateway, protocol) as lines:
            await first_chunk(lines)
            gateway.signal(signal.SIGTERM)
            rest = [line async for line in lines]  # the gate stays shut: only the drain ends it
        (event,) = [json.loads(line[6:]) for line in rest if line.startswith("data: {") and "error" in line]
        field, expected = ("code", "shutting_down") if protocol == "openai" else ("type", "overloaded_error")
        assert event["error"][field] == expected
        assert "shutting down" in event["error"]["message"]
        assert "second" not in "\n".join(rest)
        assert await asyncio.to_thread(gateway.wait_exit, 30) in EXITED


@pytest.mark.parametrize("protocol", ROUTES)
async def test_a_stream_the_replica_cuts_short_ends_with_an_error_event(gated: GatedUpstream, protocol: str) -> None:
    """Not a drain, a replica that ended its stream before the answer was complete (no [DONE],
    no finish_reason): the client is told, never handed a silently truncated answer."""
    path, body = ROUTES[protocol]
    with draining_gateway(gated, 30) as gateway:
        async with httpx.AsyncClient(timeout=30) as http:
            cut = {**body, "messages": [{"role": "user", "content": TRUNCATE}]}
            response = await http.post(gateway.base_url + path, json=cut)
    lines = response.text.splitlines()
    assert "first" in response.text
    (event,) = [json.loads(line[6:]) for line in lines if line.startswith("data: {") and '"error"' in line]
    assert "ended the stream before the answer was complete" in event["error"]["message"]
    assert "data: [DONE]" not in lines
    assert "event: message_stop" not in lines
