"""`POST /v1/messages`: the Anthropic Messages API, served by translating to chat completions."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from sage_gateway.anthropic import MessageStreamTranslator, chat_to_message, encode_events, messages_to_chat
from sage_gateway.errors import GatewayError, error_envelope, upstream_error
from sage_gateway.http import JSON, ClientGone, error_response, read_body, unless_disconnected
from sage_gateway.proxy import REPLICA, Upstream, forward_headers, request_id_of
from sage_gateway.request_fields import chat_prefix, parse_body, require_model
from sage_gateway.routes_openai import CLIENT_CLOSED
from sage_gateway.sse import SSEDecoder
from sage_gateway.state import GatewayState

router = APIRouter()
ROUTE = "messages"


@router.post("/v1/messages")
async def messages(request: Request) -> Response:
    state: GatewayState = request.app.state.gateway
    proxy = state.proxy
    started = time.perf_counter()
    request_id = request_id_of(request.headers)
    model = "unknown"
    try:
        parsed = parse_body(await read_body(request, state.settings.max_body_bytes))
        requested = require_model(parsed)
        chat = messages_to_chat(parsed)
        proxy.resolve(requested)
        model = requested
        body = orjson.dumps(chat)
        headers = forward_headers(request.headers, request_id)
        headers["content-type"] = JSON
        # The translated body is new; the replica must answer in plain bytes the SSE decoder can read.
        dropped = ("x-api-key", "accept-encoding")
        for name in [name for name in headers if name.lower().startswith("anthropic-") or name.lower() in dropped]:
            del headers[name]
        affinity = chat_prefix(chat["messages"], state.settings.prefix_chars)
        upstream = await unless_disconnected(
            request, proxy.open(model, "/v1/chat/completions", body, headers, affinity)
        )
        status = upstream.response.status
        streaming = upstream.response.headers.get("content-type", "").startswith("text/event-stream")
        if status >= 400 or not streaming:
            try:
                content = await proxy.read(upstream, model)
            finally:
                await proxy.close(upstream)
            if status >= 400:
                raise upstream_error(status, content, upstream.url)
            message = chat_to_message(orjson.loads(content), model)
            state.observe(model, ROUTE, status, started)
            headers = {"x-request-id": request_id}
            if state.settings.expose_replica:
                headers[REPLICA] = upstream.url
            return Response(orjson.dumps(message), status, headers, media_type=JSON)
    except GatewayError as error:
        state.observe(model, ROUTE, error.status, started)
        return error_response(error, request_id, anthropic=True)
    except orjson.JSONDecodeError:
        failure = GatewayError(502, "The upstream answered with a body that is not JSON.", "upstream_error")
        state.observe(model, ROUTE, 502, started)
        return error_response(failure, request_id, anthropic=True)
    except ClientGone:
        state.observe(model, ROUTE, CLIENT_CLOSED, started)
        return Response(status_code=CLIENT_CLOSED)
    events = _translate_stream(state, upstream, model, started)
    stream_headers = {"x-request-id": request_id, "cache-control": "no-cache"}
    if state.settings.expose_replica:
        stream_headers[REPLICA] = upstream.url
    return StreamingResponse(events, 200, stream_headers, media_type="text/event-stream")


async def _translate_stream(
    state: GatewayState, upstream: Upstream, model: str, started: float
) -> AsyncIterator[bytes]:
    translator = MessageStreamTranslator(model, f"msg_{uuid.uuid4().hex}")
    decoder = SSEDecoder()
    first = True
    try:
        async for chunk in upstream.response.content.iter_any():
            if first:
                state.metrics.ttft.labels(model, ROUTE).observe(time.perf_counter() - started)
                first = False
            out = []
            for data in decoder.feed(chunk):
                if data == b"[DONE]":
                    continue
                payload = orjson.loads(data)
                if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
                    out += translator.error(payload)
                    yield encode_events(out)
                    return
                out += translator.feed(payload)
            if out:
                yield encode_events(out)
        yield encode_events(translator.finish())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
        state.metrics.upstream_errors.labels(upstream.url, type(error).__name__).inc()
        envelope = error_envelope(
            502, f"{upstream.url} broke off the stream ({type(error).__name__})", "upstream_error"
        )
        yield encode_events(translator.error(envelope))
    finally:
        await state.proxy.close(upstream)
        state.observe(model, ROUTE, 200, started)
