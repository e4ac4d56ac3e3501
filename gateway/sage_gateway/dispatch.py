"""The route table's requests, dispatched before FastAPI sees them, with one error handler.

Profiling showed FastAPI's per-request machinery (telemetry checks, middleware layers, routing,
dependency solving) costing about as much as the proxying itself on the hot `/v1` routes. This
ASGI layer wraps the whole app: a path in the route table goes straight to its handler, and every
error on the way out (a WireError, a client that left, anything unexpected) is answered here in
the route's protocol, with the request id, and counted once. Everything else (health, metrics,
unknown paths) goes through FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sage_gateway.exchange import CLIENT_CLOSED, Exchange
from sage_gateway.headers import plain_headers, request_id_of
from sage_gateway.routes import RouteSpec
from sage_gateway.state import GatewayState
from sage_wire.asgi import ClientGone, error_response
from sage_wire.errors import WireError, internal_error

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, app: ASGIApp, routes: Mapping[str, RouteSpec], owner: object) -> None:
        self.app = app
        self.routes = dict(routes)
        self.owner = owner  # the app whose state holds the gateway (reached as `request.app`)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):  # mounted under a prefix (sage-edge)
                path = path[len(root) :]
            route = self.routes.get(path)
            if route is not None:
                scope["app"] = self.owner
                response = await self._answer(route, Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, route: RouteSpec, request: Request) -> Response:
        state: GatewayState = request.app.state.gateway
        headers = plain_headers(request.scope["headers"])
        exchange = Exchange(route.name, request_id_of(headers), state.metrics, headers)
        try:
            if request.method != route.method:
                message = f"{request.method} {route.path}: use {route.method}."
                raise WireError(405, message, "method_not_allowed", headers={"Allow": route.method})
            state.requests.take(1)
            exchange.gate = state.requests
            return await route.handler(request, exchange, state)
        except WireError as error:
            exchange.finish(error.status)
            return error_response(error, route.protocol, exchange.request_id)
        except ClientGone:
            exchange.finish(CLIENT_CLOSED)
            return Response(status_code=CLIENT_CLOSED)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, route.path)
            exchange.finish(500)
            return error_response(internal_error("gateway"), route.protocol, exchange.request_id)
        finally:
            state.buffers.give(exchange.held_bytes)  # the body went out (or never will)
            exchange.held_bytes = 0
