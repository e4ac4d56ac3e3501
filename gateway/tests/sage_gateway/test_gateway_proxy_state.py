"""The proxy's bookkeeping: in-flight counts and their metric series follow the replicas."""

from __future__ import annotations

from typing import Any, cast

from sage_gateway.headers import forward_headers, response_headers, translated_request_headers
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
    given = {"Connection": "keep-alive, X-Hop", "X-Hop": "1", "Host": "gw", "Content-Length": "3", "X-Keep": "k"}
    assert forward_headers(given, "rid") == {"X-Keep": "k", "x-request-id": "rid", "content-type": "application/json"}
    returned = response_headers({"content-type": "text/event-stream", "server": "uvicorn", "te": "x"}, "rid")
    assert returned == {"content-type": "text/event-stream", "x-request-id": "rid"}


def test_a_translated_body_goes_out_without_the_clients_protocol_headers() -> None:
    given = {"x-api-key": "k", "anthropic-version": "2023-06-01", "Content-Type": "text/plain", "X-Keep": "k"}
    assert translated_request_headers(given, "rid") == {
        "X-Keep": "k",
        "x-request-id": "rid",
        "content-type": "application/json",
    }
