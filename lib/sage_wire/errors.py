"""The one error type SAGE's servers raise for anything that leaves as an error response (pure).

A `WireError` carries what both protocols need: the HTTP status, a message a person can act on,
the machine-readable `code` and the `param` it concerns, and response headers (Retry-After). The
`type` each protocol shows is derived from the status, the way the official APIs do it (see
`envelopes`), so two servers can never disagree about the same condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)  # exceptions compare and hash by identity
class WireError(Exception):
    status: int
    message: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    limit_kind: str | None = None
    """For a 429: which limit was hit, `requests` or `tokens` (OpenAI names the type after it)."""

    def __str__(self) -> str:
        return self.message


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> WireError:
    return WireError(400, message, code, param)


def body_too_large(limit: int) -> WireError:
    return WireError(413, f"The request body is larger than the limit of {limit} bytes.", "request_too_large")


MODEL_LOADING = "model_loading"
ENGINE_OVERLOADED = "engine_overloaded"
REFUSED_BEFORE_START = frozenset({MODEL_LOADING, ENGINE_OVERLOADED})
"""The codes of an engine's 503s that refuse a request before any work on it (still loading; its
queue is full): a gateway may send such a request to another replica."""


def not_ready(message: str, code: str, retry_after: int | None = None, param: str | None = None) -> WireError:
    """503: the thing exists but cannot serve yet (loading, no ready replica)."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return WireError(503, message, code, param, headers)


def internal_error(component: str) -> WireError:
    return WireError(500, f"The {component} failed unexpectedly; see its log.", "internal_error")
