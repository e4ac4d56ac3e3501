"""The gateway's HTTP/1.1 client to its replicas: a keep-alive pool on asyncio protocols with
httptools' parser (see docs/gateway.md, "The upstream client", for why not aiohttp)."""

from sage_gateway.upstream.connection import UpstreamResponse
from sage_gateway.upstream.errors import (
    BrokenResponse,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    NotStarted,
    ReadTimeout,
    UpstreamError,
)
from sage_gateway.upstream.pool import UpstreamPool

__all__ = [
    "BrokenResponse",
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "NotStarted",
    "ReadTimeout",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamResponse",
]
