"""OpenAI error envelopes: every error the gateway returns has this one shape (pure).

`{"error": {"message", "type", "param", "code"}}`. Routes of the Anthropic Messages API add the
top-level `"type": "error"` Anthropic clients look for; the rest of the body stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_error",
}


@dataclass
class GatewayError(Exception):
    """An error that leaves the gateway as an OpenAI envelope with `status`."""

    status: int
    message: str
    code: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    @property
    def type(self) -> str:
        return error_type(self.status)

    def envelope(self, *, anthropic: bool = False) -> dict[str, Any]:
        return error_envelope(self.status, self.message, self.code, self.param, anthropic=anthropic)

    def body(self, *, anthropic: bool = False) -> bytes:
        return orjson.dumps(self.envelope(anthropic=anthropic))


def error_type(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_envelope(
    status: int, message: str, code: str | None, param: str | None = None, *, anthropic: bool = False
) -> dict[str, Any]:
    envelope: dict[str, Any] = {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}
    if anthropic:
        envelope = {"type": "error", **envelope}
    return envelope


def invalid_request(message: str, *, param: str | None = None, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, message, code, param)


def model_not_found(model: str, known: list[str]) -> GatewayError:
    listing = ", ".join(known) if known else "none (no engine is registered)"
    return GatewayError(
        404, f"The model '{model}' does not exist. Available models: {listing}.", "model_not_found", "model"
    )


def no_ready_replica(model: str, retry_after: int) -> GatewayError:
    return GatewayError(
        503,
        f"The model '{model}' exists but has no ready replica right now; retry in {retry_after}s.",
        "model_not_ready",
        "model",
        {"Retry-After": str(retry_after)},
    )


def body_too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than the limit of {limit} bytes.", "request_too_large")


def upstream_failed(model: str, reason: str) -> GatewayError:
    return GatewayError(502, f"Every replica of '{model}' failed: {reason}", "upstream_error")


def _envelope_of(content: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) and "message" in error else None


def is_error_envelope(content: bytes) -> bool:
    return _envelope_of(content) is not None


def upstream_error(status: int, content: bytes, replica: str) -> GatewayError:
    """An upstream error response as a GatewayError: its own envelope's fields when it sent one,
    else a 502 (server errors) or its status (client errors) quoting the start of its body."""
    error = _envelope_of(content)
    if error is not None:
        code = error.get("code")
        param = error.get("param")
        return GatewayError(
            status, str(error["message"]), str(code) if code else "upstream_error", str(param) if param else None
        )
    snippet = content[:300].decode(errors="replace").strip() or "(empty body)"
    return GatewayError(502 if status >= 500 else status, f"{replica} answered {status}: {snippet}", "upstream_error")
