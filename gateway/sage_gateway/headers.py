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
_NOT_FOR_A_TRANSLATION = frozenset({b"x-api-key", b"authorization", b"accept-encoding", b"content-type"})

REPLICA = "x-sage-replica"
"""Response header naming the replica that answered (for debugging and for tests)."""
_REQUEST_ID = REQUEST_ID.encode()
_REPLICA = REPLICA.encode()
_HOP_BY_HOP = frozenset(name.encode() for name in HOP_BY_HOP)
# The request id is the gateway's to send (the client's own, or a new one).
_REQUEST_DROPPED = _HOP_BY_HOP | {_REQUEST_ID}
CREDENTIALS = frozenset({b"authorization", b"x-api-key"})
"""The client's key: with keys required it is the gateway's to check, never an engine's to see."""
_REQUEST_AND_CREDENTIALS_DROPPED = _REQUEST_DROPPED | CREDENTIALS
# The gateway's own server writes date and server on the way out; the request id and the replica
# header are the gateway's to write.
_RESPONSE_DROPPED = _HOP_BY_HOP | {b"date", b"server", _REQUEST_ID, _REPLICA}


def request_id_header(request_id: str) -> tuple[bytes, bytes]:
    """The request id as the raw header the gateway sends (upstream and back to the client)."""
    return (_REQUEST_ID, request_id.encode("latin-1"))


def _without(headers: Iterable[tuple[bytes, bytes]], dropped: frozenset[bytes]) -> RawHeaders:
    """`headers` (names lower-case, as ASGI servers and the upstream client give them) less those
    named in `dropped` and those a `Connection` header names hop-by-hop, in one pass, as bytes."""
    kept: RawHeaders = []
    connection: bytes | None = None
    for name, value in headers:
        if name in dropped:
            if name == b"connection":
                connection = value
            continue
        kept.append((name, value))
    if connection:
        named = {part.strip() for part in connection.lower().split(b",")}
        kept = [(name, value) for name, value in kept if name not in named]
    return kept


def forward_headers(
    headers: Iterable[tuple[bytes, bytes]], request_id: str, *, keep_credentials: bool = True
) -> RawHeaders:
    """Request headers for the upstream: no hop-by-hop ones (nor those `Connection` names), and
    without the client's credentials when the gateway checked them itself."""
    kept = _without(headers, _REQUEST_DROPPED if keep_credentials else _REQUEST_AND_CREDENTIALS_DROPPED)
    kept.append(request_id_header(request_id))
    if not any(name == b"content-type" for name, _ in kept):
        kept.append((b"content-type", b"application/json"))
    return kept


def translated_request_headers(headers: Iterable[tuple[bytes, bytes]], request_id: str) -> RawHeaders:
    """Request headers for a body the gateway wrote itself (Anthropic -> chat completions)."""
    kept = [
        (name, value)
        for name, value in forward_headers(headers, request_id)
        if not name.startswith(b"anthropic-") and name not in _NOT_FOR_A_TRANSLATION
    ]
    kept.append((b"content-type", b"application/json"))
    return kept


def response_headers(upstream: Iterable[tuple[bytes, bytes]], request_id: str) -> RawHeaders:
    """The upstream's response headers the client gets, with the request id, never decoded."""
    kept = _without(upstream, _RESPONSE_DROPPED)
    kept.append(request_id_header(request_id))
    return kept


def add_replica(headers: RawHeaders, url: str) -> None:
    """Names the replica that answered in `headers` (which name none: see response_headers)."""
    headers.append((_REPLICA, url.encode("latin-1")))


def with_headers(headers: RawHeaders, added: RawHeaders, replacing: frozenset[bytes]) -> RawHeaders:
    """`headers` plus `added` (the gateway's own, e.g. rate limits, names lower-case). When any
    are added, none of `headers` named in `replacing` (a family the added ones belong to) stays."""
    if not added:
        return headers
    return [pair for pair in headers if pair[0] not in replacing] + added


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
