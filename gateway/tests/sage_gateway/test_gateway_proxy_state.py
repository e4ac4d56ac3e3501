"""The proxy's bookkeeping: in-flight counts and their metric series follow the replicas."""

from __future__ import annotations

from typing import Any, cast

from sage_gateway.auth.limits import LIMIT_HEADER_NAMES
from sage_gateway.headers import (
    add_replica,
    forward_headers,
    response_headers,
    translated_request_headers,
    with_headers,
)
from sage_gateway.metrics import GatewayMetrics
from sage_gateway.proxy import Proxy
from sage_gateway.registry import Endpoint, EngineInfo, EngineRegistry
from sage_gateway.settings import GatewaySettings


def test_series_of_departed_replicas_are_dropped() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(EngineInfo("ml/echo", "echo"))
    registry.set_endpoints("ml/echo", "s", [Endpoint("http://a:1"), Endpoint("http://b:1")])
    metrics = GatewayMetrics()
    proxy = Proxy(registry, GatewaySettings(discovery="static"), metrics, client=cast(Any, None))
    metrics.read_inflight_from(proxy.inflight_by_endpoint)
    for url in ("http://a:1", "http://b:1"):
        proxy._start(url)
    assert b'sage_gateway_inflight_requests{endpoint="http://b:1"} 1.0' in metrics.render()
    proxy._finish("http://a:1")
    registry.set_endpoints("ml/echo", "s", [Endpoint("http://a:1")])
    rendered = metrics.render()
    assert b'sage_gateway_inflight_requests{endpoint="http://a:1"} 0.0' in rendered
    assert b'endpoint="http://b:1"} 1.0' in rendered  # gone from the slice, still busy: still counted
    proxy._finish("http://b:1")
    rendered = metrics.render()
    assert b'endpoint="http://a:1"' in rendered
    assert b'endpoint="http://b:1"' not in rendered


def test_headers_forwarded_and_returned() -> None:
    given = [
        (b"connection", b"keep-alive, X-Hop"),
        (b"x-hop", b"1"),
        (b"host", b"gw"),
        (b"content-length", b"3"),
        (b"x-keep", b"k"),
        (b"x-request-id", b"the-clients"),
        (b"authorization", b"Bearer k"),
    ]
    forwarded = [(b"x-keep", b"k"), (b"authorization", b"Bearer k")]
    assert forward_headers(given, "rid") == [
        *forwarded,
        (b"x-request-id", b"rid"),
        (b"content-type", b"application/json"),
    ]
    without_key = forward_headers([*given, (b"content-type", b"text/plain")], "rid", keep_credentials=False)
    assert without_key == [(b"x-keep", b"k"), (b"content-type", b"text/plain"), (b"x-request-id", b"rid")]
    upstream = [(b"content-type", b"text/event-stream"), (b"server", b"uvicorn"), (b"te", b"x")]
    assert response_headers(upstream, "rid") == [(b"content-type", b"text/event-stream"), (b"x-request-id", b"rid")]


def test_the_client_gets_the_replicas_headers_as_bytes_with_the_gateways_own_in_place_of_the_replicas() -> None:
    upstream = [
        (b"connection", b"keep-alive, x-hop"),
        (b"x-hop", b"1"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),  # a repeated header stays two
        (b"x-request-id", b"the-replicas"),
        (b"x-sage-replica", b"http://inner:1"),
        (b"content-length", b"12"),
        (b"x-ratelimit-remaining-requests", b"99"),
    ]
    returned = response_headers(upstream, "rid")
    assert returned == [
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-ratelimit-remaining-requests", b"99"),
        (b"x-request-id", b"rid"),
    ]
    returned.append((b"x-ratelimit-reset-tokens", b"3s"))  # an engine's own, of a kind the key has no limit of
    limited = with_headers(
        returned,
        [(b"x-ratelimit-remaining-requests", b"7"), (b"x-ratelimit-limit-requests", b"8")],
        LIMIT_HEADER_NAMES,
    )
    add_replica(limited, "http://10.0.0.7:8000")
    assert limited == [
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-request-id", b"rid"),
        (b"x-ratelimit-remaining-requests", b"7"),
        (b"x-ratelimit-limit-requests", b"8"),
        (b"x-sage-replica", b"http://10.0.0.7:8000"),
    ]
    assert with_headers(returned, [], LIMIT_HEADER_NAMES) is returned


def test_a_translated_body_goes_out_without_the_clients_protocol_headers() -> None:
    given = [
        (b"x-api-key", b"k"),
        (b"anthropic-version", b"2023-06-01"),
        (b"content-type", b"text/plain"),
        (b"x-keep", b"k"),
    ]
    assert translated_request_headers(given, "rid") == [
        (b"x-keep", b"k"),
        (b"x-request-id", b"rid"),
        (b"content-type", b"application/json"),
    ]
