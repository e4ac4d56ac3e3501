"""Request bodies in (with the size limit) and JSON out, shared by the routers."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from sage_engine import errors
from sage_engine.errors import EngineError
from sage_engine.state import EngineState


def json_response(payload: Any, status: int = 200) -> Response:
    # orjson writes numpy rows directly: no per-float Python objects for embeddings.
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json"
    )


def error_response(error: EngineError) -> Response:
    return json_response(error.envelope(), error.status)


def engine_state(request: Request) -> EngineState:
    state: EngineState = request.app.state.engine
    return state


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 as soon as it passes `limit` (declared or actually sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.body_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def request_body(request: Request) -> bytes:
    return await read_body(request, engine_state(request).settings.max_body_bytes)
