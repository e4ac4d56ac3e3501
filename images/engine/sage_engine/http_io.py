"""Request bodies in (the shared wire format's reader, with the engine's size limit) and JSON out,
shared by the routers."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from sage_engine.state import EngineState
from sage_wire.asgi import read_body

CLIENT_CLOSED = 499
"""nginx's convention for a client that went away before its answer: nobody reads it."""


def json_response(payload: Any, status: int = 200) -> Response:
    # orjson writes numpy rows directly: no per-float Python objects for embeddings.
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json"
    )


def engine_state(request: Request) -> EngineState:
    state: EngineState = request.app.state.engine
    return state


async def request_body(request: Request) -> bytes:
    return await read_body(
        request, engine_state(request).settings.max_body_bytes, request.headers.get("content-length")
    )
