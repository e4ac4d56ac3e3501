"""The gateway's one route table: every `/v1` route, the protocol its errors are answered in,
and its handler. A handler reads what routing needs and hands the request to `proxy.forward`
once; it raises WireError for anything the client did wrong (the dispatcher answers it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive

from sage_gateway.anthropic import messages_to_chat
from sage_gateway.auth.usage import asking_for_usage
from sage_gateway.budget import PARSE_FACTOR, Held
from sage_gateway.exchange import Exchange
from sage_gateway.headers import forward_headers, translated_request_headers
from sage_gateway.proxy import Outbound
from sage_gateway.relay import OPENAI_PASSTHROUGH, AnthropicMessages
from sage_gateway.request_fields import chat_prefix, parse_body, require_model, routing_fields
from sage_gateway.state import GatewayState
from sage_wire.asgi import Answer, receive_body
from sage_wire.envelopes import Protocol
from sage_wire.media import JSON, REQUEST_ID

Handler = Callable[[Receive, Exchange, GatewayState], Awaitable[Answer]]
"""Reads the request (its headers are the exchange's) from `receive`; the dispatcher sends the
answer it returns."""


@dataclass(frozen=True)
class RouteSpec:
    path: str
    method: str
    name: str
    """The `route` label of the metrics."""
    protocol: Protocol
    """The shape every error of this route is answered in."""
    handler: Handler


async def _read(receive: Receive, exchange: Exchange, state: GatewayState) -> bytes:
    """The body, each chunk charged to the gateway's buffer budget as it arrives."""

    def hold(size: int) -> None:
        state.buffers.take(size)
        exchange.held_bytes += size

    return await receive_body(receive, state.settings.max_body_bytes, exchange.headers.get("content-length"), hold)


def _parsing(state: GatewayState, size: int) -> Held:
    """While a body of `size` bytes is parsed and its fields read: what that can cost, charged."""
    return Held(state.buffers, size * PARSE_FACTOR)


def _openai(path: str, route: str) -> Handler:
    """The body goes to a replica of its model untouched; the answer comes back untouched (with
    keys required, a stream is asked for its usage, which the client sees only if it asked)."""

    async def handle(receive: Receive, exchange: Exchange, state: GatewayState) -> Answer:
        caller = state.guard.caller(exchange.headers)  # 401 before the body is read
        body = await _read(receive, exchange, state)
        with _parsing(state, len(body)):
            fields = routing_fields(body, route, state.settings.prefix_chars)
            found = state.proxy.check(fields.model, caller)  # 404 / 503 before anything else
            exchange.model = fields.model
            exchange.grant = await state.guard.admit(caller, fields.document, Protocol.OPENAI)
            if (
                exchange.grant is not None
                and route != "embeddings"
                and (asked := asking_for_usage(fields.document, body))
            ):
                body, exchange.strip_usage = asked, True
            affinity_key = fields.affinity_key
            del fields  # the parsed document: only the body's bytes go on
        headers = forward_headers(exchange.raw_headers, exchange.request_id, keep_credentials=caller is None)
        outbound = Outbound(path, body, headers, affinity_key, found)
        return await state.proxy.forward(receive, exchange, outbound, OPENAI_PASSTHROUGH)

    return handle


async def messages(receive: Receive, exchange: Exchange, state: GatewayState) -> Answer:
    """The Anthropic Messages API, served by translating to chat completions and back."""
    caller = state.guard.caller(exchange.headers)
    body = await _read(receive, exchange, state)
    with _parsing(state, len(body)):
        parsed = parse_body(body)
        requested = require_model(parsed)
        chat = messages_to_chat(parsed)
        found = state.proxy.check(requested, caller)
        exchange.model = requested
        exchange.grant = await state.guard.admit(caller, parsed, Protocol.ANTHROPIC)
        translated = orjson.dumps(chat)
        affinity_key = chat_prefix(chat["messages"], state.settings.prefix_chars)
        del parsed, chat
    headers = translated_request_headers(exchange.raw_headers, exchange.request_id)
    outbound = Outbound("/v1/chat/completions", translated, headers, affinity_key, found)
    relay = AnthropicMessages(requested, f"msg_{uuid.uuid4().hex}")
    return await state.proxy.forward(receive, exchange, outbound, relay)


async def models(receive: Receive, exchange: Exchange, state: GatewayState) -> Answer:
    """Served names, aliases and adapters of the engines that have a ready replica (with keys
    required: only those the caller's key may use)."""
    caller = state.guard.caller(exchange.headers)
    data: list[dict[str, Any]] = [
        {
            "id": entry.id,
            "object": "model",
            "created": 0,
            "owned_by": "sage",
            "root": entry.root,
            "parent": None if entry.role == "served" else entry.root,
            "sage": {"engine": entry.engine, "kind": entry.kind, "role": entry.role},
        }
        for entry in state.registry.models()
        if caller is None or caller.allows(entry.namespace, entry.id)
    ]
    body = orjson.dumps({"object": "list", "data": data})
    return Response(body, headers={REQUEST_ID: exchange.request_id}, media_type=JSON)


ROUTES: dict[str, RouteSpec] = {
    spec.path: spec
    for spec in (
        RouteSpec("/v1/chat/completions", "POST", "chat", Protocol.OPENAI, _openai("/v1/chat/completions", "chat")),
        RouteSpec("/v1/completions", "POST", "completions", Protocol.OPENAI, _openai("/v1/completions", "completions")),
        RouteSpec("/v1/embeddings", "POST", "embeddings", Protocol.OPENAI, _openai("/v1/embeddings", "embeddings")),
        RouteSpec("/v1/messages", "POST", "messages", Protocol.ANTHROPIC, messages),
        RouteSpec("/v1/models", "GET", "models", Protocol.OPENAI, models),
    )
}
