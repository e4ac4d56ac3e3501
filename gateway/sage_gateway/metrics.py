"""Prometheus metrics of one gateway app (its own registry, so apps in one process stay apart)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "sage_gateway_requests",
            "Requests answered, by model, route and HTTP status.",
            ["model", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sage_gateway_request_duration_seconds",
            "Time from request to the last byte of the response.",
            ["model", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "sage_gateway_time_to_first_token_seconds",
            "Time from request to the first streamed chunk.",
            ["model", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "sage_gateway_inflight_requests",
            "Requests in flight per replica endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "sage_gateway_upstream_errors",
            "Failed attempts to reach or read from a replica, by reason.",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "sage_gateway_retries",
            "Requests moved to another replica after a connect failure.",
            ["model"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
