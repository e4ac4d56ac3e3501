"""The pure half of the discovery benchmark: engine picks, spreads and the report."""

from __future__ import annotations

import pytest
from bench.discovery_report import (
    GatewayStart,
    Machine,
    Observation,
    Round,
    Run,
    Spread,
    engine_name,
    pick_engines,
    render,
)

from sage_harness.stats import percentile


def seen(seconds: float) -> Observation:
    return Observation(seconds, polls=3, answer_seconds=0.002)


def a_run(*, refused: bool = True) -> Run:
    rounds = tuple(
        Round(
            engine_name(index),
            patch_seconds=0.01,
            routable=(seen(0.010 * index), seen(0.020 * index)),
            refused=(seen(0.030), seen(0.040)) if refused else (),
        )
        for index in range(1, 6)
    )
    machine = Machine(2, "Some CPU", 23.4, "3.12.1", "Linux-6", (1.0, 0.5, 0.25))
    starts = (GatewayStart(5, 2.5, 1.8, 80.0, 81.0), GatewayStart(5, 2.6, 1.9, 82.0, 83.0))
    empty = GatewayStart(0, 1.5, 1.2, 70.0, 70.0)
    return Run(5, "python e2e/bench/discovery_bench.py --engines 5", machine, 0.002, empty, starts, rounds)


def test_picks_are_distinct_in_range_and_repeatable() -> None:
    picks = pick_engines(1000, 20, seed=1)
    assert len(set(picks)) == 20
    assert all(0 <= pick < 1000 for pick in picks)
    assert pick_engines(1000, 20, seed=1) == picks
    assert len(pick_engines(3, 10, seed=1)) == 10  # more rounds than engines: picks repeat


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0, 5.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.95) == pytest.approx(4.8)
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_spread_of_values() -> None:
    spread = Spread.of([3.0, 1.0, 2.0])
    assert (spread.median, spread.max) == (2.0, 3.0)
    assert spread.p95 == pytest.approx(2.9)


def test_every_gateway_is_the_slowest_gateway_of_the_round() -> None:
    outcome = Round("e0001", 0.01, (seen(0.1), seen(0.3)), (seen(0.2), seen(0.05)))
    assert outcome.every_gateway_routable == 0.3
    assert outcome.every_gateway_refuses == 0.2


def test_the_report_has_the_table_the_starts_and_every_round() -> None:
    report = render(a_run())
    assert "| ready → routable, gateway 1 | 30 | 48 | 50 |" in report
    assert "| ready → routable, gateway 2 | 60 | 96 | 100 |" in report
    assert "| **ready → routable by every gateway** | 60 | 96 | 100 |" in report
    assert "| **not ready → 503 from every gateway** | 40 | 40 | 40 |" in report
    assert "| 2 | 5 | 2.60 | 1.90 | 82 | 83 |" in report
    assert "- round 5, e0005: patch 10; routable 50 / 100; 503 30 / 40 (polls 3 / 3 / 3 / 3)" in report
    assert "`python e2e/bench/discovery_bench.py --engines 5`" in report
    assert "2 CPUs (Some CPU), 23.4 GiB memory" in report
    assert "no engines at all\nturned ready 1.50 s after its launch, having used\n1.20 s of CPU, at 70 MiB" in report


def test_without_the_reverse_measurement_the_report_leaves_it_out() -> None:
    report = render(a_run(refused=False))
    assert "503 from every gateway" not in report
    assert "- round 1, e0001: patch 10; routable 10 / 20 (polls 3 / 3)" in report
