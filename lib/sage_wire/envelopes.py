"""Error envelopes in the two protocols SAGE speaks (pure).

OpenAI: `{"error": {"message", "type", "param", "code"}}`. The type follows what the official API
sends: `invalid_request_error` for every client error (401, 403, 404 and 413 included), the name
of the limit (`requests` or `tokens`) for a 429 rate limit, `server_error` for 5xx.

Anthropic (`/v1/messages`): `{"type": "error", "error": {"type", "message"}}`, with Anthropic's own
types per status (`not_found_error`, `rate_limit_error`, `overloaded_error`, ...).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson

from sage_wire.errors import REFUSED_BEFORE_START, WireError


class Protocol(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def openai_type(error: WireError) -> str:
    if error.status == 429:
        return error.limit_kind or "requests"
    return "invalid_request_error" if error.status < 500 else "server_error"


def anthropic_type(error: WireError) -> str:
    if error.status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[error.status]
    return "invalid_request_error" if error.status < 500 else "api_error"


def envelope(error: WireError, protocol: Protocol = Protocol.OPENAI) -> dict[str, Any]:
    if protocol is Protocol.ANTHROPIC:
        return {"type": "error", "error": {"type": anthropic_type(error), "message": error.message}}
    return {"error": {"message": error.message, "type": openai_type(error), "param": error.param, "code": error.code}}


def error_body(error: WireError, protocol: Protocol = Protocol.OPENAI) -> bytes:
    return orjson.dumps(envelope(error, protocol))


def error_of(content: bytes) -> dict[str, Any] | None:
    """The `error` object of an envelope (either protocol's), or None when `content` is no envelope."""
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return error_in(parsed)


def refused_before_start(status: int, content: bytes) -> bool:
    """Whether an answer is an engine's 503 that did no work on the request (see
    `errors.REFUSED_BEFORE_START`), so that trying another replica cannot run it twice."""
    if status != 503:
        return False
    error = error_of(content)
    return error is not None and error.get("code") in REFUSED_BEFORE_START


def error_in(payload: Any) -> dict[str, Any] | None:
    """The `error` object of a parsed envelope, or None."""
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) and "message" in error else None
