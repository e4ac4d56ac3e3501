"""Which headers cross the proxy, in each direction, and the request id (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sage_wire.media import REQUEST_ID

# RFC 9110 section 7.6.1, plus what the proxy recomputes itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# The gateway's own server writes these on the way out.
_RESPONSE_DROPPED = HOP_BY_HOP | {"date", "server"}
# Anthropic clients' own headers mean nothing to an OpenAI-speaking replica; the translated body
# is new, and the replica must answer in plain bytes the stream translator can read.
_NOT_FOR_A_TRANSLATION = frozenset({"x-api-key", "authorization", "accept-encoding", "content-type"})

REPLICA = "x-sage-replica"
"""Response header naming the replica that answered (for debugging and for tests)."""


def _named_by_connection(headers: Mapping[str, str]) -> set[str]:
    """The headers a `Connection` header declares hop-by-hop (any spelling of its name)."""
    named: set[str] = set()
    for name, value in headers.items():
        if name.lower() == "connection":
            named.update(part.strip().lower() for part in value.split(",") if part.strip())
    return named


CREDENTIALS = frozenset({"authorization", "x-api-key"})
"""The client's key: with keys required it is the gateway's to check, never an engine's to see."""


def forward_headers(headers: Mapping[str, str], request_id: str, *, keep_credentials: bool = True) -> dict[str, str]:
    """Request headers for the upstream: no hop-by-hop ones (nor those `Connection` names), and
    without the client's credentials when the gateway checked them itself."""
    dropped = HOP_BY_HOP | _named_by_connection(headers) | (frozenset() if keep_credentials else CREDENTIALS)
    kept = {name: value for name, value in headers.items() if name.lower() not in dropped}
    kept[REQUEST_ID] = request_id
    if not any(name.lower() == "content-type" for name in kept):
        kept["content-type"] = "application/json"
    return kept


def translated_request_headers(headers: Mapping[str, str], request_id: str) -> dict[str, str]:
    """Request headers for a body the gateway wrote itself (Anthropic -> chat completions)."""
    forwarded = forward_headers(headers, request_id).items()
    kept = {
        name: value
        for name, value in forwarded
        if not name.lower().startswith("anthropic-") and name.lower() not in _NOT_FOR_A_TRANSLATION
    }
    kept["content-type"] = "application/json"
    return kept


def response_headers(headers: Mapping[str, str], request_id: str) -> dict[str, str]:
    dropped = _RESPONSE_DROPPED | _named_by_connection(headers)
    kept = {name: value for name, value in headers.items() if name.lower() not in dropped}
    kept[REQUEST_ID] = request_id
    return kept


def request_id_of(headers: Mapping[str, str]) -> str:
    given = headers.get(REQUEST_ID)
    if given and len(given) <= 200:
        return given
    return uuid.uuid4().hex
