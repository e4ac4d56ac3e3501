"""`create_app(settings)`: the gateway as a FastAPI app whose lifespan owns the HTTP client to the
replicas and the discovery task."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sage_gateway.auth.guard import Guard
from sage_gateway.auth.keys import KeyRing
from sage_gateway.auth.limiter import Limiter, LocalLimiter
from sage_gateway.auth.sources import StaticKeys, static_policies
from sage_gateway.budget import Budget
from sage_gateway.discovery import Discovery
from sage_gateway.discovery.static import StaticDiscovery
from sage_gateway.dispatch import Dispatcher
from sage_gateway.headers import request_id_of
from sage_gateway.metrics import GatewayMetrics
from sage_gateway.proxy import Proxy
from sage_gateway.registry import EngineRegistry
from sage_gateway.routes import ROUTES
from sage_gateway.settings import GatewaySettings
from sage_gateway.state import GatewayState
from sage_gateway.upstream import UpstreamPool
from sage_gateway.workers.shared import SharedInflight, SharedTally, WorkerCounts
from sage_runtime.drain import Drain
from sage_wire.asgi import error_response

if TYPE_CHECKING:
    from sage_gateway.wake import Waker
from sage_wire.errors import WireError, internal_error
from sage_wire.media import JSON
from sage_wire.openapi import openai_api

log = logging.getLogger(__name__)


def make_discovery(settings: GatewaySettings, registry: EngineRegistry) -> Discovery:
    if settings.discovery == "static":
        return StaticDiscovery(registry, file=settings.static_engines_file, inline=settings.static_engines)
    from sage_gateway.discovery.kubernetes import KubernetesDiscovery  # noqa: PLC0415 - local mode needs no client
    from sage_kube import KubeClient  # noqa: PLC0415

    return KubernetesDiscovery(registry, KubeClient.from_env(settings.kubeconfig), settings.namespaces)


def make_waker(
    settings: GatewaySettings, registry: EngineRegistry, metrics: GatewayMetrics, discovery: Discovery
) -> Waker | None:
    """Holding for scale-from-zero: with Kubernetes discovery, unless SAGE_GATEWAY_HOLD_SECONDS is 0."""
    client = getattr(discovery, "client", None)
    if settings.discovery != "kubernetes" or settings.hold_seconds == 0 or client is None:
        return None
    from sage_gateway.wake import KubeScaler, Waker  # noqa: PLC0415 - local mode needs no client

    waker = Waker(registry, KubeScaler(client), metrics, settings.hold_seconds, settings.retry_after_seconds)
    registry.on_change = waker.notify
    return waker


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
YOUNG_GENERATION_THRESHOLD = 10_000
"""Net new containers before the collector's young pass (CPython's default: 700). What survives
a request (cycles, caches) grows by about a thousand a second under load here, so it still runs."""


def keys_namespace(settings: GatewaySettings) -> str:
    """The namespace whose APIKeys the gateway watches: the setting, else its own pod's."""
    if settings.api_keys_namespace:
        return settings.api_keys_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        msg = "auth api-keys with kubernetes discovery needs SAGE_GATEWAY_API_KEYS_NAMESPACE outside a pod"
        raise ValueError(msg) from None


def make_keys(settings: GatewaySettings, guard: Guard) -> Discovery | None:
    """Where keys come from: none (auth none), the settings' own keys, and in a cluster a watch on
    the APIKeys of one namespace. A ValueError says what is wrong."""
    if settings.auth == "none":
        return None
    policies = static_policies(list(settings.api_keys), settings.api_keys_file)
    if settings.discovery == "static":
        return StaticKeys(guard.ring, policies)
    from sage_gateway.auth.watch import KeyWatch  # noqa: PLC0415 - local mode needs no client
    from sage_kube import KubeClient  # noqa: PLC0415

    namespace = keys_namespace(settings)
    StaticKeys(guard.ring, policies)
    return KeyWatch(guard.ring, KubeClient.from_env(settings.kubeconfig), namespace, on_removed=guard.forget)


def make_limiter(settings: GatewaySettings, metrics: GatewayMetrics) -> Limiter:
    if settings.auth == "none" or not settings.redis_url:
        return LocalLimiter()
    from sage_gateway.auth.shared import RedisLimiter, connect  # noqa: PLC0415 - only with Redis

    redis = connect(settings.redis_url, settings.redis_timeout, settings.redis_password)
    return RedisLimiter(redis, metrics, prefix=settings.redis_prefix)


def make_client(settings: GatewaySettings) -> UpstreamPool:
    """One connection pool to every replica. Bodies pass through as the replica sent them, with
    their content-encoding: nothing is decompressed."""
    return UpstreamPool(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        pool_timeout=settings.pool_timeout,
        max_connections=settings.max_connections,
    )


def share_routing_state(proxy: Proxy, worker: WorkerCounts) -> None:
    """Counts every worker must agree on: in flight per replica, held and routed per engine."""
    proxy.inflight = SharedInflight(worker)
    proxy.requests_by_engine = SharedTally(worker, "routed ")
    if proxy.waker is not None:
        proxy.waker.held = SharedTally(worker, "held ")


async def _run_discovery(state: GatewayState, source: Discovery, what: str) -> None:
    try:
        await source.run()
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.exception("%s stopped; the gateway no longer follows its source", what)
        state.discovery_error = f"{what}: {type(error).__name__}: {error}"


class GatewayApp(FastAPI):
    """FastAPI with the route table's requests dispatched before FastAPI sees them (see dispatch)."""

    _dispatcher: Dispatcher | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(super().__call__, ROUTES, owner=self)
        await self._dispatcher(scope, receive, send)


def create_app(settings: GatewaySettings | None = None, worker: WorkerCounts | None = None) -> FastAPI:
    """The gateway app. Discovery starts with the app's lifespan (a bad static list fails there).
    `worker`: this process is one of several workers, which share these counts."""
    settings = settings or GatewaySettings()
    drain = Drain(settings.drain_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        drain.bind(asyncio.get_running_loop())
        registry = EngineRegistry(shared_names=frozenset(settings.shared_names))
        metrics = GatewayMetrics()
        discovery = make_discovery(settings, registry)
        limiter = make_limiter(settings, metrics)
        guard = Guard(KeyRing(), metrics, required=settings.auth != "none", limiter=limiter)
        keys = make_keys(settings, guard)
        client = make_client(settings)
        proxy = Proxy(registry, settings, metrics, client, waker=make_waker(settings, registry, metrics, discovery))
        if worker is not None:
            share_routing_state(proxy, worker)
        metrics.read_inflight_from(proxy.inflight_by_endpoint)
        drain.on_expiry(proxy.end_open_streams)
        buffers = Budget(settings.max_buffered_bytes, "buffered request bytes")
        requests = Budget(settings.max_inflight_requests, "requests in flight")
        state = app.state.gateway = GatewayState(
            settings, registry, metrics, proxy, discovery, guard, buffers, requests, keys
        )
        sources = {"discovery": discovery} | ({"API key watch": keys} if keys is not None else {})
        tasks = [asyncio.create_task(_run_discovery(state, source, what)) for what, source in sources.items()]
        renew = getattr(limiter, "renew_forever", None)
        if renew is not None:
            tasks.append(asyncio.create_task(renew(), name="sage-gateway-lease-renewal"))
        # What exists now lives as long as the app: out of the collector's way, so that its full
        # passes (every few hundred requests) do not walk tens of thousands of long-lived objects.
        gc.collect()
        gc.freeze()
        # Each request in flight holds a few dozen containers that reference counting frees once
        # it ends: at 64 clients those alone pass the default young threshold (700), and the
        # collector ran some 250 times a second, for nothing (measured: 4 µs of CPU per request).
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            for source in (*sources.values(), limiter):
                closer = getattr(source, "aclose", None)
                if closer is not None:
                    await closer()
            await client.close()
            metrics.tally.flush()  # in a worker's files, for the workers that stay

    app = GatewayApp(
        title="SAGE gateway",
        summary="OpenAI-compatible routing to ready SAGE engine replicas",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Native OpenTelemetry is off: its per-request provider lookups showed in the profile and
        # the gateway's own Prometheus metrics cover what it would record.
        telemetry={"tracing": False, "metrics": False},
    )
    app.state.drain = drain
    _add_health_routes(app)
    _add_error_handlers(app)
    return app


def _add_health_routes(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        # Liveness: a discovery or key watch that ended can only be mended by a restart, so it
        # fails here and the kubelet restarts the pod instead of leaving it unready for ever.
        state: GatewayState = request.app.state.gateway
        if state.discovery_error is not None:
            message = f"Discovery stopped: {state.discovery_error}; the gateway needs a restart."
            return error_response(WireError(503, message, "discovery_stopped"))
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        state: GatewayState = request.app.state.gateway
        if request.app.state.drain.draining:
            return error_response(WireError(503, "The gateway is shutting down.", "shutting_down"))
        if state.discovery_error is not None:
            return error_response(WireError(503, f"Discovery stopped: {state.discovery_error}", "not_ready"))
        if not state.discovery.synced.is_set():
            return error_response(WireError(503, "Discovery has not synced yet.", "not_ready"))
        if state.keys is not None and not state.keys.synced.is_set():
            return error_response(WireError(503, "The API keys have not synced yet.", "not_ready"))
        engines = len(state.registry.engines())
        return Response(orjson.dumps({"status": "ready", "engines": engines}), media_type=JSON)

    description = orjson.dumps(openai_api())

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return Response(description, media_type=JSON)

    @app.get("/load")
    async def load(request: Request) -> Response:
        """Per engine: in flight, held, and routed since start; the operator's autoscaler reads it."""
        state: GatewayState = request.app.state.gateway
        return Response(orjson.dumps({"engines": state.proxy.load()}), media_type=JSON)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        state: GatewayState = request.app.state.gateway
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _add_error_handlers(app: FastAPI) -> None:
    """What reaches FastAPI is outside the route table (health, metrics, unknown paths): its
    errors are answered in the OpenAI envelope, like the table's OpenAI routes."""

    def respond(request: Request, error: WireError) -> Response:
        return error_response(error, request_id=request_id_of(request.headers))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return respond(request, WireError(exc.status_code, message, code, headers=dict(exc.headers or {})))

    async def validation_error(request: Request, exc: Exception) -> Response:
        return respond(request, WireError(400, f"Invalid request: {exc}", "invalid_request"))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return respond(request, internal_error("gateway"))

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
