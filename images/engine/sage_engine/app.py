"""The FastAPI application: lifespan (background model load), error envelopes, health and
model listing. Routes: `openai_routes` (embeddings, chat, completions), `adapter_routes`. Served
behind `embeddings_route.EngineApp`, which answers POST /v1/embeddings itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sage_engine import errors
from sage_engine.adapter_routes import router as adapter_router
from sage_engine.backends import load_backend
from sage_engine.backends.base import Backend
from sage_engine.embeddings_route import EngineApp
from sage_engine.http_io import CLIENT_CLOSED, json_response
from sage_engine.listed_adapters import AdapterListError, load_listed_adapters
from sage_engine.openai_routes import router as openai_router
from sage_engine.responses import model_list
from sage_engine.settings import EngineSettings
from sage_engine.state import EngineState
from sage_wire.asgi import ClientGone, error_response
from sage_wire.errors import WireError, internal_error
from sage_wire.openapi import openai_api

log = logging.getLogger("sage_engine")


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in the OpenAI envelope of the shared wire format."""

    @app.exception_handler(WireError)
    async def _wire_error(_: Request, error: WireError) -> Response:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> Response:
        code = "not_found" if error.status_code == 404 else None
        return error_response(WireError(error.status_code, str(error.detail), code))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> Response:
        return error_response(errors.bad_request(f"Invalid request: {error.errors()[0]['msg']}"))

    @app.exception_handler(ClientGone)
    async def _client_gone(_: Request, __: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(internal_error("engine"))


def create_app(
    settings: EngineSettings,
    on_load_failure: Callable[[str], None] | None = None,
    loader: Callable[[EngineSettings], Backend] = load_backend,
) -> EngineApp:
    """The engine app (FastAPI, behind `EngineApp`'s own embeddings route). The model loads in a
    thread after start-up; `on_load_failure` gets the reason when it cannot (the server then exits
    non-zero)."""
    state = EngineState(settings)

    async def load() -> None:
        log.info("%s", state.reason)
        try:
            backend = await asyncio.to_thread(loader, settings)
            await asyncio.get_running_loop().run_in_executor(
                state.generate_executor, load_listed_adapters, backend, settings.adapters_file
            )
        except Exception as error:  # any load failure is reported, never swallowed
            if isinstance(error, AdapterListError):
                reason = str(error)
            else:
                reason = f"failed to load model '{settings.model}' ({settings.backend}): {error}"
            log.exception("%s", reason)
            state.failed(reason)
            if on_load_failure is not None:
                on_load_failure(reason)
            return
        state.ready(backend)
        log.info("model '%s' ready, serving as %s", settings.model, settings.model_names())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.drain.bind(asyncio.get_running_loop())
        task = asyncio.create_task(load(), name="load-model")
        try:
            yield
        finally:
            task.cancel()
            if state.batcher is not None:
                await state.batcher.close()
                batches, items = state.batcher.batches_run, state.batcher.items_run
                if batches:
                    log.info("embedding batches: %d, %d inputs, %.1f per batch", batches, items, items / batches)
            state.shutdown()

    app = FastAPI(title="SAGE engine", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = state
    app.include_router(openai_router)
    app.include_router(adapter_router)
    _install_error_handlers(app)

    @app.get("/livez")
    async def livez() -> Response:
        """The process serves (loading, busy or draining alike): what a liveness probe asks."""
        return json_response({"status": "alive"})

    @app.get("/health")
    async def health() -> Response:
        if state.drain.draining:
            return json_response({"status": "shutting down", "reason": "the engine is draining its requests"}, 503)
        if state.status == "ok":
            return json_response({"status": "ok"})
        return json_response({"status": state.status, "reason": state.reason}, 503)

    description = orjson.dumps(openai_api(anthropic=False))

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return Response(description, media_type="application/json")

    @app.get("/v1/models")
    async def models() -> Response:
        backend = state.require_backend()
        names = settings.model_names()
        return json_response(model_list(names, backend.adapter_names(), settings.model, state.created))

    return EngineApp(app, state)
