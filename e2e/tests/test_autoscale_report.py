"""The pure half of the autoscaling benchmark: watch events turned into a cold-start split and a summary."""

from __future__ import annotations

from typing import Any

import pytest
from bench.autoscale_report import ColdStart, Request, Sample, WatchEvent, cold_start, in_flight, render, summarise


def engine_at(seen_at: float, replicas: int) -> WatchEvent:
    return WatchEvent(seen_at, "MODIFIED", {"metadata": {"name": "burst"}, "spec": {"replicas": replicas}})


def pod_at(seen_at: float, *, scheduled: bool = False, started: bool = False, ready: bool = False) -> WatchEvent:
    conditions = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-04T10:00:01Z"}]
    status: dict[str, Any] = {"conditions": conditions if scheduled else []}
    if started:
        status["containerStatuses"] = [{"state": {"running": {"startedAt": "2026-12-04T10:00:02Z"}}}]
    if ready:
        ready_at = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-04T10:00:05Z"}
        status["conditions"] = [*conditions, ready_at]
    return WatchEvent(
        seen_at,
        "MODIFIED",
        {"metadata": {"name": "burst-1", "creationTimestamp": "2026-12-04T10:00:00Z"}, "status": status},
    )


def test_a_wake_is_split_at_the_moments_the_watches_saw() -> None:
    engine_events = [engine_at(1.0, 0), engine_at(10.2, 1)]
    pod_events = [pod_at(10.3), pod_at(10.4, scheduled=True), pod_at(11.9, scheduled=True, started=True)]
    pod_events.append(pod_at(14.0, scheduled=True, started=True, ready=True))
    wake = cold_start(10.0, 14.5, engine_events, pod_events)
    assert wake.phases() == pytest.approx([0.2, 0.2, 1.5, 2.1, 0.5, 4.5])
    assert wake.api_seconds() == (1.0, 3.0)


def test_a_wake_without_a_new_pod_is_an_error_not_a_zero() -> None:
    old_pod = [pod_at(2.0, scheduled=True, started=True, ready=True)]
    with pytest.raises(ValueError, match="no scale-up or no new pod"):
        cold_start(10.0, 12.0, [engine_at(10.5, 1)], old_pod)


def test_a_pod_that_never_became_ready_cannot_be_split() -> None:
    wake = cold_start(10.0, 14.0, [engine_at(10.2, 1)], [pod_at(10.3, scheduled=True)])
    assert isinstance(wake, ColdStart)
    with pytest.raises(ValueError, match="never reached every milestone"):
        wake.phases()


def test_the_load_step_summary_separates_held_and_steady_requests() -> None:
    samples = [Sample(0.0, 1, 0, 0, 2), Sample(2.0, 2, 1, 2, 0), Sample(4.0, 2, 2, 2, 0), Sample(12.0, 0, 0, 0, 0)]
    requests = [Request(0.1, 5.0, True), Request(0.2, 6.0, True), Request(4.5, 7.5, True), Request(5.0, 8.0, False)]
    summary = summarise(samples, requests, load_seconds=10.0)
    assert (summary.peak_spec, summary.peak_ready) == (2, 2)
    assert (summary.to_first_ready, summary.to_peak_ready, summary.stop_to_zero) == (2.0, 4.0, 2.0)
    assert summary.held_latency == pytest.approx([4.9, 5.8])
    assert summary.steady_latency == pytest.approx([3.0])  # the failed one is counted, not timed
    assert (summary.requests, summary.failures) == (4, 1)
    assert in_flight(requests, 5.5) == 3


def test_the_report_shows_each_phase_and_the_median_of_the_wakes() -> None:
    pod_events = [pod_at(10.3), pod_at(10.4, scheduled=True), pod_at(11.9, scheduled=True, started=True)]
    pod_events.append(pod_at(14.0, scheduled=True, started=True, ready=True))
    wake = cold_start(10.0, 14.5, [engine_at(10.2, 1)], pod_events)
    summary = summarise([Sample(0.0, 1, 1, 1, 0)], [Request(0.0, 1.0, True)], load_seconds=1.0)
    report = render({"load step": "1 client"}, [wake, wake], summary, ["a note"])
    assert "| (b2) containers started → Ready | engine process starts" in report
    assert "| total hold: request → first token | what the client waited | 4.50 | 4.50 | 4.50 |" in report
    assert "| load step | 1 client |" in report
