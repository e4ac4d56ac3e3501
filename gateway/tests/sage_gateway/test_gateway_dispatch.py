"""The dispatcher: a route's answer goes out first, then the exchange is recorded, exactly once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from starlette.applications import Starlette
from starlette.types import Receive

from sage_gateway.budget import Budget
from sage_gateway.dispatch import Dispatcher
from sage_gateway.exchange import Exchange
from sage_gateway.metrics import GatewayMetrics
from sage_gateway.routes import Handler, RouteSpec
from sage_gateway.state import GatewayState
from sage_wire.asgi import Answer, CompleteAnswer
from sage_wire.envelopes import Protocol
from sage_wire.errors import WireError


def requests_counted(metrics: GatewayMetrics, status: int) -> float:
    """As a scrape reads it: what is pending applied first."""
    metrics.tally.flush()
    return float(metrics.requests.labels("unknown", "chat", str(status))._value.get())


def dispatcher_for(handler: Handler) -> tuple[Dispatcher, GatewayState]:
    state = cast(
        GatewayState,
        SimpleNamespace(metrics=GatewayMetrics(), buffers=Budget(1000, "bytes"), requests=Budget(10, "requests")),
    )
    owner = cast(Starlette, SimpleNamespace(state=SimpleNamespace(gateway=state)))
    route = RouteSpec("/v1/chat/completions", "POST", "chat", Protocol.OPENAI, handler)

    async def fastapi(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a route-table path never reaches FastAPI")

    return Dispatcher(fastapi, {route.path: route}, owner), state


async def call(dispatcher: Dispatcher, on_message: Any) -> None:
    scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST", "headers": [(b"x-request-id", b"r1")]}

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        on_message(message)

    await dispatcher(scope, receive, send)


async def test_the_exchange_is_recorded_after_the_answers_last_byte() -> None:
    async def handle(receive: Receive, exchange: Exchange, state: GatewayState) -> Answer:
        exchange.held_bytes = 100
        state.buffers.take(100)
        return CompleteAnswer(b"{}", 200, [(b"x-request-id", exchange.request_id.encode())])

    dispatcher, state = dispatcher_for(handle)
    seen: list[tuple[str, float, int, int]] = []
    await call(dispatcher, lambda m: seen.append((m["type"], requests_counted(state.metrics, 200), *used(state))))
    assert seen == [("http.response.start", 0.0, 1, 100), ("http.response.body", 0.0, 1, 100)]
    assert requests_counted(state.metrics, 200) == 1.0
    assert used(state) == (0, 0)


def used(state: GatewayState) -> tuple[int, int]:
    return state.requests.used, state.buffers.used


async def test_an_error_is_answered_in_the_routes_envelope_and_counted_once() -> None:
    async def handle(receive: Receive, exchange: Exchange, state: GatewayState) -> Answer:
        raise WireError(400, "bad", "invalid_request")

    dispatcher, state = dispatcher_for(handle)
    messages: list[Any] = []
    await call(dispatcher, messages.append)
    assert messages[0]["status"] == 400
    assert (b"x-request-id", b"r1") in messages[0]["headers"]
    assert b'"invalid_request"' in messages[1]["body"]
    assert requests_counted(state.metrics, 400) == 1.0
    assert used(state) == (0, 0)
