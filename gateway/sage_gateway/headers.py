"""Which headers cross the proxy, in each direction, and the request id (pure)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Mapping

from sage_wire.media import REQUEST_ID, RawHeaders

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
# Anthropic clients' own headers mean nothing to an OpenAI-speaking replica; the translated body
# is new, and the replica must answer in plain bytes the stream translator can read.
_NOT_FOR_A_TRANSLATION = frozenset({"x-api-key", "authorization", "accept-encoding", "content-type"})

REPLICA = "x-sage-replica"
"""Response header naming the replica that answered (for debugging and for tests)."""
# The gateway's own server writes date and server on the way out; the request id and the replica
# header are the gateway's to write.
_RESPONSE_DROPPED = frozenset(name.encode() for name in HOP_BY_HOP | {"date", "server", REQUEST_ID, REPLICA})
_REQUEST_ID = REQUEST_ID.encode()
_REPLICA = REPLICA.encode()


def _without(headers: Mapping[str, str], dropped: frozenset[str]) -> dict[str, str]:
    """`headers` less those named in `dropped` (lower-case) and those a `Connection` header names
    hop-by-hop, in one pass (this runs twice per request)."""
    kept: dict[str, str] = {}
    connection: str | None = None
    for name, value in headers.items():
        lower = name.lower()
        if lower in dropped:
            if lower == "connection":
                connection = value
            continue
        kept[name] = value
    if connection:
        named = {part.strip() for part in connection.lower().split(",")}
        kept = {name: value for name, value in kept.items() if name.lower() not in named}
    return kept


CREDENTIALS = frozenset({"authorization", "x-api-key"})
"""The client's key: with keys required it is the gateway's to check, never an engine's to see."""
_HOP_BY_HOP_AND_CREDENTIALS = HOP_BY_HOP | CREDENTIALS


def forward_headers(headers: Mapping[str, str], request_id: str, *, keep_credentials: bool = True) -> dict[str, str]:
    """Request headers for the upstream: no hop-by-hop ones (nor those `Connection` names), and
    without the client's credentials when the gateway checked them itself."""
    kept = _without(headers, HOP_BY_HOP if keep_credentials else _HOP_BY_HOP_AND_CREDENTIALS)
    kept[REQUEST_ID] = request_id
    if "content-type" not in kept and not any(name.lower() == "content-type" for name in kept):
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


def response_headers(upstream: Iterable[tuple[bytes, bytes]], request_id: str) -> RawHeaders:
    """The upstream's response headers (names lower-case) the client gets, with the request id:
    none hop-by-hop (nor those a `Connection` header names), in one pass, and never decoded."""
    kept: RawHeaders = []
    connection: bytes | None = None
    for name, value in upstream:
        if name in _RESPONSE_DROPPED:
            if name == b"connection":
                connection = value
            continue
        kept.append((name, value))
    if connection:
        named = {part.strip() for part in connection.lower().split(b",")}
        kept = [(name, value) for name, value in kept if name not in named]
    kept.append((_REQUEST_ID, request_id.encode("latin-1")))
    return kept


def add_replica(headers: RawHeaders, url: str) -> None:
    """Names the replica that answered in `headers` (which name none: see response_headers)."""
    headers.append((_REPLICA, url.encode("latin-1")))


def with_headers(headers: RawHeaders, added: Mapping[str, str]) -> RawHeaders:
    """`headers` plus `added` (the gateway's own, e.g. rate limits), which replace any of the
    same name."""
    if not added:
        return headers
    encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in added.items()]
    replaced = {name for name, _ in encoded}
    return [(name, value) for name, value in headers if name not in replaced] + encoded


_ID_PREFIX = uuid.uuid4().hex[:16]
"""This process's: ids from two gateways (or workers) never collide."""
_id_numbers = itertools.count(1)


def plain_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """An ASGI request's headers (lower-case names, as the server gives them) as a dict; a repeated
    header's values joined with ", " as HTTP allows. Built once per request: every later look-up
    is a dict's."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def request_id_of(headers: Mapping[str, str]) -> str:
    """The client's own request id, else a new one: 32 hex digits, unique to this process and
    request (a counter after a random prefix; not a secret, and far cheaper than a uuid4)."""
    given = headers.get(REQUEST_ID)
    if given and len(given) <= 200:
        return given
    return f"{_ID_PREFIX}{next(_id_numbers):016x}"
