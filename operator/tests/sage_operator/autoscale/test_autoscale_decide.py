"""The autoscaler's arithmetic (pure): up at once, down only after the delay, never to zero while
requests keep coming, and never down before it has watched a whole delay."""

from __future__ import annotations

from sage_operator.autoscale.decide import Autoscaler, Bounds
from sage_operator.autoscale.loop import LoadReadings, bounds_of

BOUNDS = Bounds(min_replicas=0, max_replicas=4, target=2, scale_down_delay=60)


def run(readings: list[tuple[float, float, int]], current: int, window: float = 20) -> list[tuple[float, int, str]]:
    """(time, demand, requests counter) readings, deciding after each; the changes made."""
    scaler, changes = Autoscaler(window), []
    for now, demand, requests in readings:
        scaler.observe("ml/qwen", now, demand, requests)
        decision = scaler.decide("ml/qwen", BOUNDS, current, now)
        if decision is not None:
            changes.append((now, decision.replicas, decision.reason))
            current = decision.replicas
    return changes


def test_load_scales_up_at_once_within_the_bounds() -> None:
    assert run([(0, 5, 0)], current=1) == [(0, 3, "ScaledUp")]  # ceil(5 / 2)
    assert run([(0, 50, 0)], current=1) == [(0, 4, "ScaledUp")]  # maxReplicas


def test_idle_scales_to_zero_only_after_the_delay() -> None:
    busy = [(float(t), 4.0, t) for t in range(0, 70, 10)]  # 2 replicas' worth for a while
    idle = [(float(t), 0.0, 60) for t in range(70, 200, 10)]
    changes = run(busy + idle, current=2)
    # The window's average last asked for 1 replica at 80 and for 0 from 90: each holds for 60 s.
    assert changes == [(140.0, 1, "ScaledDown"), (150.0, 0, "ScaledDown")]


def test_requests_between_readings_keep_one_replica() -> None:
    readings = [(float(t), 0.0, t) for t in range(0, 300, 10)]  # nothing in flight at each look, yet requests
    assert run(readings, current=1) == []


def test_nothing_goes_down_before_a_whole_delay_was_watched() -> None:
    assert run([(0, 0, 0), (30, 0, 0)], current=3) == []
    assert run([(0, 0, 0), (30, 0, 0), (61, 0, 0)], current=3) == [(61, 0, "ScaledDown")]


def test_only_engines_with_a_max_are_ours_and_gateways_are_summed() -> None:
    assert bounds_of({"replicas": 2}) is None  # an HPA, KEDA or a person scales it
    assert bounds_of({"maxReplicas": 3}) == Bounds(1, 3, 8, 300.0)
    readings = LoadReadings()
    readings.add({"engines": {"ml/qwen": {"inflight": 2, "held": 1, "requests": 10}}})
    readings.add({"engines": {"ml/qwen": {"inflight": 3, "held": 0, "requests": 5}}})
    assert (readings.demand, readings.requests, readings.answered) == ({"ml/qwen": 6.0}, {"ml/qwen": 15}, 2)
