"""The OpenAI routes: chat completions, completions and embeddings proxied untouched; models listed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from sage_gateway.errors import GatewayError, is_error_envelope, upstream_error
from sage_gateway.http import JSON, ClientGone, error_response, read_body, unless_disconnected
from sage_gateway.proxy import REPLICA, forward_headers, request_id_of, response_headers
from sage_gateway.request_fields import routing_fields
from sage_gateway.state import GatewayState

router = APIRouter()

CLIENT_CLOSED = 499  # nginx's convention; only ever seen in metrics, the client is gone


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


async def proxy_openai(request: Request, route: str, path: str) -> Response:
    """Forward the request body untouched to a replica of its model and relay the answer."""
    state = _state(request)
    proxy = state.proxy
    started = time.perf_counter()
    request_id = request_id_of(request.headers)
    model = "unknown"
    try:
        body = await read_body(request, state.settings.max_body_bytes)
        fields = routing_fields(body, route, state.settings.prefix_chars)
        proxy.resolve(fields.model)  # 404 / 503 before anything else
        model = fields.model
        headers = forward_headers(request.headers, request_id)
        upstream = await unless_disconnected(request, proxy.open(model, path, body, headers, fields.affinity_key))
    except GatewayError as error:
        state.observe(model, route, error.status, started)
        return error_response(error, request_id)
    except ClientGone:
        state.observe(model, route, CLIENT_CLOSED, started)
        return Response(status_code=CLIENT_CLOSED)
    status = upstream.response.status
    out_headers = response_headers(upstream.response.headers, request_id)
    if state.settings.expose_replica:
        out_headers[REPLICA] = upstream.url
    if upstream.response.headers.get("content-type", "").startswith("text/event-stream"):

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in proxy.relay(upstream, model, route, started):
                    yield chunk
            finally:
                state.observe(model, route, status, started)

        return StreamingResponse(stream(), status, out_headers)
    try:
        content = await proxy.read(upstream, model)
    except GatewayError as error:
        state.observe(model, route, error.status, started)
        return error_response(error, request_id)
    finally:
        await proxy.close(upstream)
    encoded = "content-encoding" in upstream.response.headers
    # A crashed server (or a proxy in between) may answer in plain text: wrap it in an envelope.
    if status >= 400 and not encoded and not is_error_envelope(content):
        failure = upstream_error(status, content, upstream.url)
        state.observe(model, route, failure.status, started)
        return error_response(failure, request_id)
    state.observe(model, route, status, started)
    return Response(content, status, out_headers)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await proxy_openai(request, "chat", "/v1/chat/completions")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await proxy_openai(request, "completions", "/v1/completions")


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await proxy_openai(request, "embeddings", "/v1/embeddings")


@router.get("/v1/models")
async def models(request: Request) -> Response:
    """Served names, aliases and adapters of the engines that have a ready replica."""
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
        for entry in _state(request).registry.models()
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)
