"""`create_app(mount_llm, llm_prefix)`: the edge shell. The gateway's lifespan runs inside the
shell's, since mounted apps get no lifespan events of their own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from sage_gateway import GatewaySettings
from sage_gateway import create_app as create_gateway
from sage_gateway.state import GatewayState
from sage_wire.asgi import error_response
from sage_wire.errors import WireError
from sage_wire.media import JSON


def normalise_prefix(prefix: str | None) -> str:
    """`llm`, `/llm/` -> `/llm`; None, `` and `/` -> `` (mount at the root)."""
    if not prefix:
        return ""
    stripped = prefix.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def create_app(
    mount_llm: bool = True, llm_prefix: str | None = None, gateway_settings: GatewaySettings | None = None
) -> FastAPI:
    """The edge app: `/healthz`, `/readyz`, and the gateway at `llm_prefix` (default `/`)."""
    gateway = create_gateway(gateway_settings) if mount_llm else None
    prefix = normalise_prefix(llm_prefix)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if gateway is not None:
                await stack.enter_async_context(gateway.router.lifespan_context(gateway))
            yield

    app = FastAPI(title="sage-edge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz")
    async def readyz() -> Response:
        parts: dict[str, str] = {}
        if gateway is not None:
            state: GatewayState | None = getattr(gateway.state, "gateway", None)
            synced = state is not None and state.discovery.synced.is_set()
            parts["llm"] = "ready" if synced else "waiting for discovery"
        ready = all(value == "ready" for value in parts.values())
        body = {"status": "ready" if ready else "not ready", "components": parts}
        return Response(orjson.dumps(body), 200 if ready else 503, media_type=JSON)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = f"{request.method} {request.url.path}: no such route on sage-edge"
        return error_response(WireError(status, message, "not_found" if status == 404 else "http_error"))

    app.add_exception_handler(HTTPException, not_found)
    if gateway is not None:
        app.mount(prefix or "/", gateway)
    return app
