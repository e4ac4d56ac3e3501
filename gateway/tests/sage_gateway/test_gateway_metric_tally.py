"""Per-request metric additions gathered and applied in bulk read exactly as if each had been
applied to its series directly, and reach the series at the next scrape or within a second."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sage_gateway import metric_tally
from sage_gateway.metric_tally import MetricTally
from sage_gateway.metrics import LATENCY_BUCKETS, GatewayMetrics
from sage_harness.waiting import wait_until_async

# Every bound itself (observe() counts a value equal to a bound in that bucket), values between,
# below the first and past the last.
VALUES = [0.0, 0.001, *LATENCY_BUCKETS, 0.0051, 0.2, 7.5, 299.9, 301.0, 1e9, 0.005, 0.005]


def series(registry: CollectorRegistry) -> list[str]:
    """The exposition's samples, less the creation times (which differ between registries)."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def pair() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("c", "counted", ["kind"], registry=registry)
    histogram = Histogram("h", "observed", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    return registry, counter, histogram


async def test_a_tallied_histogram_and_counter_read_like_directly_observed_ones() -> None:
    direct, direct_counter, direct_histogram = pair()
    tallied, tallied_counter, tallied_histogram = pair()
    tally = MetricTally()  # in an event loop: applied by flush() below, the timer's second is far off
    for value in VALUES:
        direct_histogram.labels("chat").observe(value)
        tally.observe(tallied_histogram.labels("chat"), value)
        direct_counter.labels("tokens").inc(value)
        tally.count(tallied_counter.labels("tokens"), value)
    assert series(tallied) != series(direct)  # nothing applied yet
    tally.flush()
    assert series(tallied) == series(direct)
    assert 'h_bucket{le="0.005",route="chat"} 5.0' in series(tallied)  # 0, 0.001 and 0.005 thrice


def test_outside_an_event_loop_additions_apply_at_once() -> None:
    registry, counter, histogram = pair()
    tally = MetricTally()
    tally.count(counter.labels("a"), 2)
    tally.observe(histogram.labels("r"), 0.3)
    assert 'c_total{kind="a"} 2.0' in series(registry)
    assert 'h_count{route="r"} 1.0' in series(registry)


async def test_in_a_loop_they_wait_for_a_scrape_or_the_flush_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = GatewayMetrics()
    metrics.observe_request("m", "chat", 200, 0.02)
    line = 'sage_gateway_requests_total{model="m",route="chat",status="200"} 1.0'
    assert line not in series(metrics.registry)  # read without a flush: still pending
    assert line in metrics.render().decode()  # a scrape applies what is pending first

    monkeypatch.setattr(metric_tally, "FLUSH_SECONDS", 0.05)
    metrics.observe_request("m", "chat", 200, 0.02)
    metrics.observe_first_byte("m", "chat", 0.01)
    await asyncio.sleep(0)
    assert line in series(metrics.registry)  # the first request's, not yet the second's
    await wait_until_async(
        lambda: 'sage_gateway_requests_total{model="m",route="chat",status="200"} 2.0' in series(metrics.registry),
        what="the second request counted by the timer",
        within=10,
    )
    assert 'sage_gateway_time_to_first_token_seconds_count{model="m",route="chat"} 1.0' in series(metrics.registry)
