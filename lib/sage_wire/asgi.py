"""The wire format at the ASGI boundary (Starlette): request bodies read within a limit, and
errors turned into responses in a protocol's envelope."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from sage_wire.envelopes import Protocol, error_body
from sage_wire.errors import WireError, body_too_large
from sage_wire.media import JSON, REQUEST_ID


class ClientGone(Exception):
    """The client disconnected before its request was read or answered."""


async def read_body(request: Request, limit: int, on_chunk: Callable[[int], None] | None = None) -> bytes:
    """The request body, or a 413 as soon as it is known to exceed `limit` bytes (declared in
    Content-Length or actually sent); ClientGone when the client hangs up meanwhile. `on_chunk`
    is told the size of each chunk as it arrives (and may refuse it by raising)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            if on_chunk is not None:
                on_chunk(len(chunk))
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone from None
    return b"".join(chunks)


def error_response(error: WireError, protocol: Protocol = Protocol.OPENAI, request_id: str | None = None) -> Response:
    headers = dict(error.headers)
    if request_id:
        headers[REQUEST_ID] = request_id
    return Response(error_body(error, protocol), error.status, headers, media_type=JSON)
