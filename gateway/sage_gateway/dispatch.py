"""The route table's requests, dispatched before FastAPI sees them, with one error handler.

Profiling showed FastAPI's per-request machinery (telemetry checks, middleware layers, routing,
dependency solving) costing about as much as the proxying itself on the hot `/v1` routes. This
ASGI layer wraps the whole app: a path in the route table goes straight to its handler, and every
error on the way out (a WireError, a client that left, anything unexpected) is answered here in
the route's protocol, with the request id, and counted once, after the answer's last byte went
out (the latency histogram measures to it, and the client does not wait for the bookkeeping).
Answers relayed from a replica go out as raw ASGI messages with the replica's headers kept as
bytes (sage_wire.asgi.CompleteAnswer, RelayedStream); Starlette builds only the rare ones (errors,
/v1/models). Everything else (health, metrics, unknown paths) goes through FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sage_gateway.exchange import CLIENT_CLOSED, Exchange
from sage_gateway.headers import plain_headers, request_id_of
from sage_gateway.routes import RouteSpec
from sage_gateway.state import GatewayState
from sage_wire.asgi import Answer, ClientGone, error_response
from sage_wire.errors import WireError, internal_error
from sage_wire.media import RawHeaders

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, app: ASGIApp, routes: Mapping[str, RouteSpec], owner: Starlette) -> None:
        self.app = app
        self.routes = dict(routes)
        self.owner = owner  # the app whose state holds the gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):  # mounted under a prefix (sage-edge)
                path = path[len(root) :]
            route = self.routes.get(path)
            if route is not None:
                await self._serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, route: RouteSpec, scope: Scope, receive: Receive, send: Send) -> None:
        """Answers the request, then does what does not shape the answer: the client has its last
        byte before the exchange is recorded and the request's budgets are given back."""
        state: GatewayState = self.owner.state.gateway
        raw_headers: RawHeaders = scope["headers"]
        headers = plain_headers(raw_headers)
        exchange = Exchange(route.name, request_id_of(headers), state.metrics, headers, raw_headers)
        answer: Answer | None = None
        try:
            answer = await self._answer(route, scope["method"], receive, exchange, state)
            await answer(scope, receive, send)
        finally:
            if answer is not None:
                exchange.finish(answer.status_code)  # a stream's relay finished it with its own status
            state.buffers.give(exchange.held_bytes)  # the body went out (or never will)
            exchange.held_bytes = 0

    async def _answer(
        self, route: RouteSpec, method: str, receive: Receive, exchange: Exchange, state: GatewayState
    ) -> Answer:
        try:
            if method != route.method:
                message = f"{method} {route.path}: use {route.method}."
                raise WireError(405, message, "method_not_allowed", headers={"Allow": route.method})
            state.requests.take(1)
            exchange.gate = state.requests
            return await route.handler(receive, exchange, state)
        except WireError as error:
            return error_response(error, route.protocol, exchange.request_id)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        except Exception:
            log.exception("unexpected error on %s %s", method, route.path)
            return error_response(internal_error("gateway"), route.protocol, exchange.request_id)
