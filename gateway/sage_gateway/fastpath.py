"""The proxied routes, dispatched before FastAPI's router.

Profiling showed FastAPI's per-request machinery (routing, dependency solving, its inner
middleware) costing about as much as the proxying itself on the hot `POST /v1/*` routes. This
ASGI layer sends those requests straight to their handlers (which take a Starlette `Request` and
return a `Response`, and turn every error into an envelope themselves); everything else, and any
unexpected exception, still goes through FastAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]


class ProxyFastPath:
    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):  # mounted under a prefix (sage-edge)
                path = path[len(root) :]
            handler = self.routes.get(path)
            if handler is not None:
                request = Request(scope, receive, send)
                response = await handler(request)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
