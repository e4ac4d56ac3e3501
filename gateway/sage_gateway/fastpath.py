"""The proxied routes, dispatched before FastAPI sees them.

Profiling showed FastAPI's per-request machinery (telemetry checks, middleware layers, routing,
dependency solving) costing about as much as the proxying itself on the hot `POST /v1/*` routes.
This ASGI layer wraps the whole app and sends those requests straight to their handlers, which take a
Starlette `Request`, return a `Response` and turn every error into an envelope themselves; an
unexpected exception becomes a 500 envelope here. Everything else goes through FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sage_gateway.errors import GatewayError
from sage_gateway.http import error_response

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


class ProxyFastPath:
    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler], owner: object) -> None:
        self.app = app
        self.routes = dict(routes)
        self.owner = owner  # the app handlers reach as `request.app` (its state holds the gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):  # mounted under a prefix (sage-edge)
                path = path[len(root) :]
            handler = self.routes.get(path)
            if handler is not None:
                scope["app"] = self.owner
                request = Request(scope, receive, send)
                try:
                    response = await handler(request)
                except Exception:
                    log.exception("unexpected error on POST %s", path)
                    failure = GatewayError(500, "The gateway failed unexpectedly; see its log.", "internal_error")
                    response = error_response(failure)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
