"""Prometheus metrics of one gateway app (its own registry, so apps in one process stay apart)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from sage_gateway.metric_tally import MetricTally
from sage_gateway.workers import MULTIPROCESS_DIR


def record_for_every_worker() -> None:
    """In one worker of several (MULTIPROCESS_DIR set): keep metric values in that folder's files,
    which `render` on any worker sums. prometheus_client picks where values live when it is first
    imported, which can be before the folder was set."""
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class InflightCollector(Collector):
    """`sage_gateway_inflight_requests{endpoint}`, read from the proxy's own counts at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[tuple[str, int]]] = list

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sage_gateway_inflight_requests", "Requests in flight per replica endpoint.", labels=["endpoint"]
        )
        for endpoint, count in self.source():
            family.add_metric([endpoint], count)
        yield family


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = field(default_factory=dict)
    _key_children: dict[tuple[str, str], tuple[Counter, Counter, Counter]] = field(default_factory=dict)
    _ttft_children: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    tally: MetricTally = field(default_factory=MetricTally)
    """Where each request's additions gather until they are applied (see metric_tally)."""

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
        self._inflight = InflightCollector()
        self.registry.register(self._inflight)
        self.held_requests = Gauge(
            "sage_gateway_held_requests",
            "Requests waiting for an engine that scales from zero to have a ready replica.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.hold_seconds = Histogram(
            "sage_gateway_hold_duration_seconds",
            "How long held requests waited for a ready replica (those that got one).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scale_ups = Counter(
            "sage_gateway_scale_ups",
            "Engines this gateway scaled from zero to one replica for held requests.",
            ["model"],
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
            "Requests moved to another replica: a connect failure, a refusal before any work, or a missing adapter.",
            ["model"],
            registry=self.registry,
        )
        self.adapter_misses = Counter(
            "sage_gateway_adapter_misses",
            "Replicas that answered 404 for an adapter their engine serves (not loaded there yet).",
            ["model"],
            registry=self.registry,
        )

        self.auth_failures = Counter(
            "sage_gateway_auth_failures",
            "Requests refused with 401: no key, an unknown, disabled or expired one.",
            registry=self.registry,
        )
        self.key_requests = Counter(
            "sage_gateway_key_requests",
            "Requests admitted, by API key (the APIKey's namespace/name, never the key) and model.",
            ["key", "model"],
            registry=self.registry,
        )
        self.key_tokens = Counter(
            "sage_gateway_key_tokens",
            "Tokens the engines reported, by API key, model and kind (prompt or completion).",
            ["key", "model", "kind"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "sage_gateway_rate_limited",
            "Requests refused with 429, by API key and the limit hit (requests or tokens).",
            ["key", "limit"],
            registry=self.registry,
        )

        self.shared_limits_up = Gauge(
            "sage_gateway_shared_limits_up",
            "1 while the rate-limit counters shared through Redis answer; 0 while this replica limits on its own.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.shared_limits_fallbacks = Counter(
            "sage_gateway_shared_limits_fallbacks",
            "Admissions decided by this replica's own counters because Redis did not answer.",
            registry=self.registry,
        )

    def observe_request(self, model: str, route: str, status: int, seconds: float) -> None:
        """One answered request. The labelled children are cached: `labels()` takes a lock and
        builds a key on every call, and this runs on every request (so do the tally's)."""
        key = (model, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(model, route, str(status)), self.latency.labels(model, route))
            self._request_children[key] = children
        self.tally.count(children[0])
        self.tally.observe(children[1], seconds)

    def observe_first_byte(self, model: str, route: str, seconds: float) -> None:
        """A stream's first chunk went out `seconds` after its request came (the child cached)."""
        child = self._ttft_children.get((model, route))
        if child is None:
            child = self._ttft_children[(model, route)] = self.ttft.labels(model, route)
        self.tally.observe(child, seconds)

    def key_counters(self, key: str, model: str) -> tuple[Counter, Counter, Counter]:
        """The requests, prompt-token and completion-token counters of one key and model (cached
        like observe_request's: these too are touched on every request with keys; count them
        through `tally`)."""
        children = self._key_children.get((key, model))
        if children is None:
            children = (
                self.key_requests.labels(key, model),
                self.key_tokens.labels(key, model, "prompt"),
                self.key_tokens.labels(key, model, "completion"),
            )
            self._key_children[(key, model)] = children
        return children

    def forget_key(self, key: str) -> None:
        for cached in [cached for cached in self._key_children if cached[0] == key]:
            del self._key_children[cached]

    def read_inflight_from(self, source: Callable[[], Iterable[tuple[str, int]]]) -> None:
        """Where `sage_gateway_inflight_requests` comes from at each scrape: (endpoint, requests in
        flight) for every known replica. Read then, not counted per request: the proxy keeps
        these counts anyway (across all workers), and replicas that are gone simply drop out."""
        self._inflight.source = source

    def render(self) -> bytes:
        self.tally.flush()
        folder = os.environ.get(MULTIPROCESS_DIR)
        if folder:
            every_worker = CollectorRegistry()
            MultiProcessCollector(every_worker, path=folder)  # type: ignore[no-untyped-call]
            every_worker.register(self._inflight)  # already counted over every worker
            return generate_latest(every_worker)
        return generate_latest(self.registry)
