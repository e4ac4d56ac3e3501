"""The local control plane's management API, which `sage llm ...` talks to. It listens on the
loopback address only: whoever can reach it can start processes as this user.

    GET    /healthz                      200 while the process runs
    GET    /readyz                       200 once the first engines settled and the gateway is up
    GET    /v1/engines                   {"gateway": url, "items": [row, ...]} engines, then fine-tunes
    POST   /v1/engines                   an LLMEngine manifest -> 201 {"message", "item"}
    POST   /v1/finetunes                 a FinetuneRequest -> 201 {"message", "item"}
    DELETE /v1/engines/{name}?delete=    stop (kept as Paused) or delete; fine-tunes are deleted
    GET    /v1/engines/{name}/logs?follow=   text/plain, one line per log line

Errors are {"error": {"message", "type"}} with 400 (bad manifest), 404 (unknown name) or 409
(name in use)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sage_api.finetune_request import FinetuneRequest, RequestError
from sage_local.manifests import ManifestError
from sage_local.plane import Conflict, LocalPlane, engine_row, finetune_row


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _unknown(name: str) -> JSONResponse:
    return _error(404, "not_found", f"no engine or fine-tune named {name} in the local control plane")


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def control_app(plane: LocalPlane, *, gateway_url: str, is_ready: Any) -> FastAPI:
    """`is_ready()` says whether the first engines settled and the gateway answers."""
    app = FastAPI(title="SAGE local control plane", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if is_ready():
            return JSONResponse({"status": "ready", "gateway": gateway_url})
        return _error(503, "starting", "engines are still loading")

    @app.get("/v1/engines")
    async def engines() -> dict[str, Any]:
        return {"gateway": gateway_url, "items": plane.rows()}

    @app.post("/v1/engines", status_code=201)
    async def start_engine(request: Request) -> Response:
        manifest = await _json_object(request)
        if manifest is None:
            return _error(400, "invalid_request", "the body must be an LLMEngine manifest as a JSON object")
        try:
            state = plane.start_engine(manifest)
        except ManifestError as error:
            return _error(400, "invalid_manifest", str(error))
        except Conflict as error:
            return _error(409, "conflict", str(error))
        message = f"engine {state.engine.name} starting on port {state.engine.port} ({state.engine.model})"
        return JSONResponse({"message": message, "item": engine_row(state)}, status_code=201)

    @app.post("/v1/finetunes", status_code=201)
    async def start_finetune(request: Request) -> Response:
        body = await _json_object(request)
        if body is None:
            return _error(400, "invalid_request", "the body must be a fine-tune request as a JSON object")
        try:
            run = plane.start_finetune(FinetuneRequest.from_wire(body))
        except (RequestError, ManifestError, TypeError) as error:
            return _error(400, "invalid_request", str(error))
        except ValueError as error:
            return _error(409, "conflict", str(error))
        message = f"fine-tune {run.request.name} started (output: {run.request.output})"
        return JSONResponse({"message": message, "item": finetune_row(run)}, status_code=201)

    @app.delete("/v1/engines/{name}")
    async def stop(name: str, delete: bool = False) -> Response:
        try:
            message = await plane.stop(name, delete=delete)
        except KeyError:
            return _unknown(name)
        return JSONResponse({"message": message})

    @app.get("/v1/engines/{name}/logs")
    async def logs(name: str, follow: bool = False) -> Response:
        try:
            plane.log_file(name)
        except KeyError:
            return _unknown(name)

        async def lines() -> AsyncIterator[bytes]:
            async for line in plane.log_lines(name, follow=follow):
                yield (line + "\n").encode()

        return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")

    return app
