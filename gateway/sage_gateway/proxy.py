"""The proxy: `forward()` takes a request whose model is known, and owns everything from there on:
pick a ready replica, send the body, retry connect failures on another replica, read or relay
the answer in the client's protocol (see `relay`), keep in-flight counts, and record metrics.

A request may move to another replica only before any byte of the response went to the client:
when connecting fails, when a kept-alive connection turns out to be dead before the response
started (the replica went away), when a replica answers 404 for an adapter its engine serves
(it has not loaded it yet; see adapter_misses), or when it refuses the request with a 503 that
says it did no work (still loading, queue full: sage_wire.errors.REFUSED_BEFORE_START). Slow
replicas (read timeouts) are not retried.

The upstream client is the gateway's own (sage_gateway.upstream): profiled under load, aiohttp's
client took about as much CPU per request as the rest of the gateway together (httpx's far more).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import Receive

from sage_gateway.adapter_misses import AdapterMisses
from sage_gateway.auth.keys import KeyPolicy
from sage_gateway.auth.limits import LIMIT_HEADER_NAMES
from sage_gateway.auth.usage import body_usage
from sage_gateway.errors import (
    model_not_found,
    no_ready_replica,
    paused_for_finetune,
    upstream_failed,
    upstream_timeout,
)
from sage_gateway.exchange import Exchange
from sage_gateway.headers import add_replica, with_headers
from sage_gateway.metrics import GatewayMetrics
from sage_gateway.policies import Inflight, InflightCounter, LocalTally, RoutingPolicy, Tally, make_policy
from sage_gateway.registry import EngineRegistry, PolicyName, Route, Unavailable, Unknown
from sage_gateway.relay import Relay
from sage_gateway.settings import GatewaySettings
from sage_gateway.upstream import NotStarted, ReadTimeout, UpstreamError, UpstreamPool, UpstreamResponse
from sage_wire.asgi import Answer, CompleteAnswer, LastChunk, RelayedStream, unless_gone
from sage_wire.envelopes import refused_before_start
from sage_wire.errors import WireError
from sage_wire.media import EVENT_STREAM, RawHeaders

if TYPE_CHECKING:
    from sage_gateway.wake import Waker


_EVENT_STREAM = EVENT_STREAM.encode()


@dataclass(slots=True)
class Outbound:
    """What goes to the replica: the path, the body (the client's own bytes, or a translation) and
    the headers; `affinity_key` feeds the prefix-hash policy. `found`: what the route's own check
    found (`Proxy.check`), which the first attempt routes by instead of resolving the model again."""

    path: str
    body: bytes
    headers: RawHeaders
    affinity_key: str | None = None
    found: Route | Unavailable | None = None


@dataclass
class _Upstream:
    """An upstream response whose headers arrived; the body is still to be read."""

    url: str
    response: UpstreamResponse


SHUTTING_DOWN = WireError(
    503, "The gateway is shutting down and this stream outlived its drain time; retry the request.", "shutting_down"
)


@dataclass
class Proxy:
    registry: EngineRegistry
    settings: GatewaySettings
    metrics: GatewayMetrics
    client: UpstreamPool
    inflight: Inflight = field(default_factory=InflightCounter)
    _policies: dict[tuple[str, PolicyName], RoutingPolicy] = field(default_factory=dict)
    _streams: dict[int, _Upstream] = field(default_factory=dict)
    """Streams being relayed (by id of their upstream), which a drain that runs out ends."""
    _cut: set[int] = field(default_factory=set)
    misses: AdapterMisses = field(init=False)
    waker: Waker | None = None
    """Holds requests for engines that scale from zero (Kubernetes discovery only)."""
    requests_by_engine: Tally = field(default_factory=LocalTally)
    """Requests routed (or held) per engine key since start: the operator's autoscaler tells
    activity between two looks from it (see `load`)."""

    def __post_init__(self) -> None:
        self.misses = AdapterMisses(self.settings.adapter_miss_seconds)

    def end_open_streams(self) -> None:
        """Ends every stream still open (the drain time is over): each gets an error event."""
        for key, upstream in list(self._streams.items()):
            self._cut.add(key)
            upstream.response.close()

    def resolve(self, model: str, caller: KeyPolicy | None = None) -> Route:
        """Where `model` can go; 404 when no engine serves it (or the caller's key may not use
        it: the same answer, so that other tenants' names stay unknown), 503 when none is ready."""
        found = self.registry.resolve(model)
        if caller is not None and not isinstance(found, Unknown) and not caller.allows(found.engine.namespace, model):
            found = Unknown(model, ())
        if isinstance(found, Route):
            return found
        if isinstance(found, Unavailable):
            raise no_ready_replica(model, self.settings.retry_after_seconds)
        if caller is not None:
            known = [entry.id for entry in self.registry.models() if caller.allows(entry.namespace, entry.id)]
            raise model_not_found(model, known)
        raise model_not_found(model, list(found.known))

    async def forward(self, receive: Receive, exchange: Exchange, outbound: Outbound, relay: Relay) -> Answer:
        """The client's response (whoever sends it finishes the exchange after its last byte; a
        stream's relay finishes it itself). Raises WireError only before any byte was sent (the
        caller answers it in the route's protocol); a client that hangs up raises ClientGone."""
        upstream = await unless_gone(receive, self._open(exchange, outbound))
        response = upstream.response
        streaming = response.status < 400 and (response.header(b"content-type") or b"").startswith(_EVENT_STREAM)
        headers = relay.headers(response.raw_headers, exchange.request_id, streaming=streaming)
        if exchange.grant is not None:
            headers = with_headers(headers, exchange.grant.headers, LIMIT_HEADER_NAMES)
        if self.settings.expose_replica:
            add_replica(headers, upstream.url)
        if streaming:
            return RelayedStream(self._relay(upstream, exchange, relay), response.status, headers)
        try:
            content = await self._read(upstream, exchange.model)
        finally:
            self._close(upstream)
        encoded = response.header(b"content-encoding") is not None
        if response.status >= 400:
            failure = relay.error(response.status, content, upstream.url, encoded=encoded)
            if failure is not None:
                raise failure
            return CompleteAnswer(content, response.status, headers)
        if exchange.grant is not None and not encoded:
            exchange.tokens = body_usage(content)
        return CompleteAnswer(relay.body(content), response.status, headers)

    def _policy(self, route: Route, use_affinity: bool) -> RoutingPolicy:
        name = route.engine.routing_policy if use_affinity else PolicyName.LEAST_INFLIGHT
        key = (route.engine.key, name)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = make_policy(name, factor=self.settings.bounded_load_factor)
        return policy

    def check(self, model: str, caller: KeyPolicy | None = None) -> Route | Unavailable:
        """What routes ask before reading further: `resolve`'s 404 and 503, but for a model whose
        engine will be woken and waited for (scale from zero: Unavailable, to be held), and with
        a 503 naming the FinetuneJob for a paused one."""
        try:
            return self.resolve(model, caller)
        except WireError as error:
            found = self.registry.resolve(model)
            if error.status != 503 or not isinstance(found, Unavailable):
                raise
            if found.engine.paused_by:
                raise paused_for_finetune(model, found.engine.paused_by, self.settings.retry_after_seconds) from None
            if self.waker is None or not found.engine.scales_from_zero:
                raise
            return found

    def load(self) -> dict[str, dict[str, int]]:
        """Per engine key: requests in flight on its replicas, requests held for it, and requests
        routed to it since start (GET /load; read by the operator's autoscaler)."""
        report: dict[str, dict[str, int]] = {}
        held: Tally = self.waker.held if self.waker is not None else LocalTally()
        for engine in self.registry.engines():
            inflight = sum(self.inflight.counts.get(url, 0) for url in self.registry.ready_urls(engine.key))
            report[engine.key] = {
                "inflight": inflight,
                "held": held.get(engine.key, 0),
                "requests": self.requests_by_engine.get(engine.key, 0),
            }
        return report

    async def _route(self, model: str, caller: KeyPolicy | None, found: Route | Unavailable | None) -> Route:
        """`resolve` (unless `found` already), but a model whose engine scales from zero is held
        until a replica is ready."""
        found = found or self.check(model, caller)
        key = found.engine.key
        self.requests_by_engine.add(key)
        if isinstance(found, Route):
            return found
        assert self.waker is not None  # check() returns Unavailable only with a waker
        return await self.waker.hold(model, found.engine)

    def _pick(self, route: Route, affinity_key: str | None, exclude: set[str]) -> str | None:
        urls = self.misses.serving(route.model, route.urls) if route.model in route.engine.adapters else route.urls
        urls = [url for url in urls if url not in exclude] if exclude else urls
        if not urls:
            return None
        return self._policy(route, affinity_key is not None).choose(urls, self.inflight.counts, affinity_key)

    def _start(self, url: str) -> None:
        self.inflight.start(url)

    def _finish(self, url: str) -> None:
        self.inflight.finish(url)

    def inflight_by_endpoint(self) -> list[tuple[str, int]]:
        """Requests in flight on every ready replica, and on any still busy that went away."""
        counts = self.inflight.counts
        return [(url, counts.get(url, 0)) for url in sorted(self.registry.all_ready_urls() | set(counts))]

    def _failed(self, url: str, error: BaseException) -> None:
        self.metrics.upstream_errors.labels(url, type(error).__name__).inc()

    async def _open(self, exchange: Exchange, outbound: Outbound) -> _Upstream:
        """Send the body to a ready replica and wait for the response headers, trying further
        replicas while connecting fails."""
        model = exchange.model
        caller = exchange.grant.policy if exchange.grant is not None else None
        tried: set[str] = set()
        last_error = "no replica answered"
        for attempt in range(self.settings.connect_retries + 1):
            route = await self._route(model, caller, None if attempt else outbound.found)
            url = self._pick(route, outbound.affinity_key, tried)
            if url is None:
                break
            if attempt:
                self.metrics.retries.labels(model).inc()
            tried.add(url)
            self._start(url)
            try:
                response = await self.client.post(url, outbound.path, outbound.body, outbound.headers)
            except NotStarted as error:
                self._finish(url)
                self._failed(url, error)
                last_error = f"{url}: {type(error).__name__}: {error}"
                continue
            except ReadTimeout as error:
                self._finish(url)
                self._failed(url, error)
                raise upstream_timeout(model, f"{url} ({type(error).__name__})") from None
            except UpstreamError as error:
                self._finish(url)
                self._failed(url, error)
                raise upstream_failed(model, f"{url}: {error}") from None
            except BaseException:
                self._finish(url)
                raise
            if response.status == 503 and attempt < self.settings.connect_retries:
                others = any(u not in tried for u in route.urls)
                if others and refused_before_start(503, await response.read()):  # a small envelope
                    self._close(_Upstream(url, response))
                    last_error = f"{url} refused the request before starting it (loading or busy)"
                    continue
            if response.status == 404 and model in route.engine.adapters:
                self.misses.missed(model, url)
                self.metrics.adapter_misses.labels(model).inc()
                others = attempt < self.settings.connect_retries and any(u not in tried for u in route.urls)
                if others:
                    self._close(_Upstream(url, response))
                    last_error = f"{url} does not serve the adapter {model}"
                    continue
            return _Upstream(url, response)
        raise upstream_failed(model, last_error)

    def _close(self, upstream: _Upstream) -> None:
        try:
            upstream.response.close()
        finally:
            self._finish(upstream.url)

    async def _read(self, upstream: _Upstream, model: str) -> bytes:
        """The whole raw body (still compressed if the upstream compressed it)."""
        try:
            return await upstream.response.read()
        except ReadTimeout as error:
            self._failed(upstream.url, error)
            raise upstream_timeout(model, f"{upstream.url} stopped sending ({type(error).__name__})") from None
        except UpstreamError as error:
            self._failed(upstream.url, error)
            raise upstream_failed(model, f"{upstream.url} broke off the response ({type(error).__name__})") from None

    async def _relay(self, upstream: _Upstream, exchange: Exchange, relay: Relay) -> AsyncIterator[bytes]:
        """The stream chunk by chunk as it arrives, shaped by the relay; an upstream failure
        mid-stream ends it with an error event (the status line is long gone by then)."""
        shaper = relay.stream(count_usage=exchange.grant is not None, strip_usage=exchange.strip_usage)
        first = True
        key = id(upstream)
        self._streams[key] = upstream
        try:
            response = upstream.response
            while (chunk := await response.next_chunk()) is not None:  # no generator in between
                if first:
                    exchange.first_byte()
                    first = False
                out = shaper.feed(chunk)
                if response.drained and key not in self._cut:
                    # The upstream already ended: this is the client's last write, terminator included.
                    yield LastChunk(out + shaper.end())
                    return
                if out:
                    yield out
            if key in self._cut:
                yield shaper.fail(SHUTTING_DOWN)
            elif tail := shaper.end():
                yield tail
        except UpstreamError as error:
            if key in self._cut:
                yield shaper.fail(SHUTTING_DOWN)
            else:
                self._failed(upstream.url, error)
                message = f"{upstream.url} broke off the stream ({type(error).__name__})"
                yield shaper.fail(WireError(502, message, "upstream_error"))
        finally:
            self._streams.pop(key, None)
            self._cut.discard(key)
            self._close(upstream)
            exchange.tokens = shaper.tokens
            exchange.finish(shaper.failed_status or upstream.response.status)
