"""POST /v1/embeddings: the answer (`embedding_answer`), and the engine's ASGI app, which sends
that route's requests straight to it, ahead of FastAPI.

The route is the engine's hottest: at concurrency 32 each request's time on the event loop holds
the GIL the embedding workers need for their Python parts. Through FastAPI a request passed six
middleware layers (each wrapping `send`), FastAPI's router and Starlette's Request and Response
objects; here it goes from uvicorn to the handler and leaves in two `send`s. Its errors leave in
the envelopes FastAPI's handlers give (`app._install_error_handlers`); every other request, and
the lifespan, go to FastAPI, which keeps the route too (a GET there is a 405).
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sage_engine import errors, responses
from sage_engine.http_io import CLIENT_CLOSED
from sage_engine.protocol import EmbeddingRequest, input_too_long, normalize_embedding_input, parse_body
from sage_engine.state import EngineState
from sage_wire.asgi import ClientGone, error_response, receive_body
from sage_wire.errors import WireError, internal_error

log = logging.getLogger("sage_engine")

PATH = "/v1/embeddings"


async def embedding_answer(state: EngineState, raw: bytes) -> bytes:
    """The JSON answer to one request body, or a WireError."""
    backend = state.require_backend()
    body = parse_body(EmbeddingRequest, raw)
    state.resolve(body.model, allow_adapters=False)
    if not backend.supports_embeddings():
        raise errors.unsupported_route("a text-generation model", PATH)
    items = normalize_embedding_input(body.input, state.settings.max_inputs)
    if body.dimensions is not None and not backend.supports_dimensions(body.dimensions):
        raise errors.bad_request(
            f"This model does not support 'dimensions' ({body.dimensions} requested); its "
            f"embeddings have {backend.embedding_dimensions()} dimensions.",
            param="dimensions",
        )
    if isinstance(items[0], list):
        vocabulary = backend.vocabulary_size()
        for index, item in enumerate(items):
            if isinstance(item, list) and max(item) >= vocabulary:
                raise errors.bad_request(
                    f"Input {index} has token id {max(item)}; this model's vocabulary has {vocabulary} tokens.", "input"
                )
    assert state.batcher is not None  # set together with the backend
    rows = await state.batcher.submit(items)
    limit = backend.max_input_tokens()
    tokens = 0
    for index, (_, count) in enumerate(rows):
        if count > limit:
            raise input_too_long(index, count, limit)
        tokens += count
    vectors = responses.embedding_rows([vector for vector, _ in rows], body.dimensions)
    name = body.model or state.settings.name()
    answer = responses.embedding_response(vectors, name, body.encoding_format, tokens)
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


class EngineApp:
    """The ASGI app uvicorn serves: POST /v1/embeddings to `embedding_answer`, the rest to `app`."""

    def __init__(self, app: FastAPI, state: EngineState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST":
            await self.embeddings(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            limit = self.state.settings.max_body_bytes
            raw = await receive_body(receive, limit, _header(scope, b"content-length"))
            answer = await embedding_answer(self.state, raw)
        except WireError as error:
            await error_response(error)(scope, receive, send)
            return
        except ClientGone:
            await Response(status_code=CLIENT_CLOSED)(scope, receive, send)
            return
        except Exception:  # the envelope FastAPI's handler gives, and the traceback in the log
            log.exception("unexpected error")
            await error_response(internal_error("engine"))(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
