"""The proxy: pick a ready replica, open the upstream request, retry connect failures elsewhere.

A request may move to another replica only before any byte of the response went to the client:
when connecting fails, or when a kept-alive connection turns out to be dead before the response
started (the replica went away). Slow replicas (read timeouts) are not retried.

The upstream client is aiohttp: profiling the gateway with httpx showed httpcore's connection
pool taking most of the time per request (10-30x slower than aiohttp on the benchmark), and the
data plane is where the gateway's time goes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import aiohttp

from sage_gateway.errors import GatewayError, model_not_found, no_ready_replica, upstream_failed
from sage_gateway.metrics import GatewayMetrics
from sage_gateway.policies import InflightCounter, RoutingPolicy, make_policy
from sage_gateway.registry import EngineRegistry, PolicyName, Route, Unavailable
from sage_gateway.settings import GatewaySettings
from sage_gateway.sse import encode_data

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

# Failures that happen before the replica could have started answering.
RETRYABLE = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)
TIMEOUTS = (TimeoutError, aiohttp.ServerTimeoutError)
REQUEST_ID = "x-request-id"
REPLICA = "x-sage-replica"
"""Response header naming the replica that answered (for debugging and for tests)."""


def _named_by_connection(headers: Mapping[str, str]) -> set[str]:
    """The headers a `Connection` header declares hop-by-hop (any spelling of its name)."""
    named: set[str] = set()
    for name, value in headers.items():
        if name.lower() == "connection":
            named.update(part.strip().lower() for part in value.split(",") if part.strip())
    return named


def forward_headers(headers: Mapping[str, str], request_id: str) -> dict[str, str]:
    """Request headers for the upstream: no hop-by-hop ones (nor those `Connection` names)."""
    dropped = HOP_BY_HOP | _named_by_connection(headers)
    kept = {name: value for name, value in headers.items() if name.lower() not in dropped}
    kept[REQUEST_ID] = request_id
    if not any(name.lower() == "content-type" for name in kept):
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


@dataclass
class Upstream:
    """An upstream response whose headers arrived; the body is still to be read."""

    url: str
    response: aiohttp.ClientResponse
    started: float


@dataclass
class Proxy:
    registry: EngineRegistry
    settings: GatewaySettings
    metrics: GatewayMetrics
    client: aiohttp.ClientSession
    inflight: InflightCounter = field(default_factory=InflightCounter)
    _policies: dict[tuple[str, PolicyName], RoutingPolicy] = field(default_factory=dict)
    _metrics_version: int = -1

    def resolve(self, model: str) -> Route:
        found = self.registry.resolve(model)
        if isinstance(found, Route):
            return found
        if isinstance(found, Unavailable):
            raise no_ready_replica(model, self.settings.retry_after_seconds)
        raise model_not_found(model, list(found.known))

    def _policy(self, route: Route, use_affinity: bool) -> RoutingPolicy:
        name = route.engine.routing_policy if use_affinity else PolicyName.LEAST_INFLIGHT
        key = (route.engine.key, name)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = make_policy(name, factor=self.settings.bounded_load_factor)
        return policy

    def pick(self, route: Route, affinity_key: str | None, exclude: set[str]) -> str | None:
        urls = [url for url in route.urls if url not in exclude] if exclude else route.urls
        if not urls:
            return None
        return self._policy(route, affinity_key is not None).choose(urls, self.inflight.counts, affinity_key)

    def _start(self, url: str) -> None:
        self.inflight.start(url)
        self.metrics.inflight_of(url).inc()

    def finish(self, url: str) -> None:
        self.inflight.finish(url)
        self.metrics.inflight_of(url).dec()
        if self.registry.version != self._metrics_version:  # replicas changed since last time
            self._metrics_version = self.registry.version
            self.metrics.forget_endpoints(self.registry.all_ready_urls() | set(self.inflight.counts))

    async def open(
        self, model: str, path: str, body: bytes, headers: dict[str, str], affinity_key: str | None
    ) -> Upstream:
        """Send `body` to a ready replica of `model` and wait for the response headers.

        The caller owns the returned response: read it, then `close()` it.
        """
        tried: set[str] = set()
        last_error = "no replica answered"
        for attempt in range(self.settings.connect_retries + 1):
            route = self.resolve(model)
            url = self.pick(route, affinity_key, tried)
            if url is None:
                break
            if attempt:
                self.metrics.retries.labels(model).inc()
            tried.add(url)
            started = time.perf_counter()
            self._start(url)
            try:
                response = await self.client.post(url + path, data=body, headers=headers)
            except RETRYABLE as error:
                self.finish(url)
                self.metrics.upstream_errors.labels(url, type(error).__name__).inc()
                last_error = f"{url}: {type(error).__name__}: {error}"
                continue
            except TIMEOUTS as error:
                self.finish(url)
                self.metrics.upstream_errors.labels(url, type(error).__name__).inc()
                raise upstream_failed(model, f"{url} did not answer in time ({type(error).__name__})") from None
            except BaseException:
                self.finish(url)
                raise
            return Upstream(url, response, started)
        raise upstream_failed(model, last_error)

    async def close(self, upstream: Upstream) -> None:
        try:
            upstream.response.close()
        finally:
            self.finish(upstream.url)

    async def read(self, upstream: Upstream, model: str) -> bytes:
        """The whole raw body (still compressed if the upstream compressed it)."""
        try:
            return await upstream.response.read()
        except (aiohttp.ClientError, *TIMEOUTS) as error:
            self.metrics.upstream_errors.labels(upstream.url, type(error).__name__).inc()
            raise upstream_failed(model, f"{upstream.url} broke off the response ({type(error).__name__})") from None

    async def relay(self, upstream: Upstream, model: str, route: str, started: float) -> AsyncIterator[bytes]:
        """The raw body chunk by chunk as it arrives; an upstream failure mid-stream ends the stream
        with an error event (the status line is long gone by then)."""
        first = True
        try:
            async for chunk in upstream.response.content.iter_any():
                if first:
                    self.metrics.ttft.labels(model, route).observe(time.perf_counter() - started)
                    first = False
                yield chunk
        except (aiohttp.ClientError, *TIMEOUTS) as error:
            self.metrics.upstream_errors.labels(upstream.url, type(error).__name__).inc()
            failure = GatewayError(
                502, f"{upstream.url} broke off the stream ({type(error).__name__})", "upstream_error"
            )
            yield encode_data(failure.envelope())
        finally:
            await self.close(upstream)
