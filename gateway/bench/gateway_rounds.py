"""The headline figures round by round (pure): how far the machine moved them during one run.

The comparison table pools every round (req/s: the median of rounds; p50s: over every request of
every round). On a shared machine a burst of other work can slow one round by half, so this table
shows each round's own figure, taken against the baseline measured in the same round (a round runs
each scenario against every target within a minute or so), and the median of those paired figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from bench.gateway_report import (
    CHAT_1,
    CHAT_64,
    DIRECT,
    REFERENCE,
    STREAM_16,
    WRK_64,
    Cell,
    Results,
    Scenario,
    markdown,
)

PerRound = Callable[[Cell, Cell], list[float]]
"""A target's cell and its baseline's -> the figure in each round."""


def _added_ms(figure: str) -> PerRound:
    def rounds(cell: Cell, baseline: Cell) -> list[float]:
        mine, theirs = getattr(cell, figure), getattr(baseline, figure)
        return [(value - base) * 1000 for value, base in zip(mine, theirs, strict=True)]

    return rounds


def _ratio(cell: Cell, baseline: Cell) -> list[float]:
    return [
        rate / base if base else math.nan for rate, base in zip(cell.round_rates, baseline.round_rates, strict=True)
    ]


ROWS: list[tuple[str, Scenario, str, PerRound, str]] = [
    ("added p50, 1 client (ms)", CHAT_1, DIRECT, _added_ms("round_p50s"), "+.2f"),
    (f"req/s, 64 clients, ratio to {REFERENCE}", CHAT_64, REFERENCE, _ratio, ".2f"),
    (f"req/s, 64 connections (wrk), ratio to {REFERENCE}", WRK_64, REFERENCE, _ratio, ".2f"),
    ("added stream TTFT p50, 16 clients (ms)", STREAM_16, DIRECT, _added_ms("round_ttft_p50s"), "+.2f"),
]


def _median(values: list[float]) -> float:
    kept = [value for value in values if not math.isnan(value)]
    return statistics.median(kept) if kept else math.nan


def rounds_table(results: Results, targets: list[str]) -> str:
    """A row per figure and target (not its own baseline): each round's value, and their median."""
    rounds = max((len(cell.round_rates) for cells in results.values() for cell in cells.values()), default=0)
    rows: list[list[str]] = []
    for label, scenario, against, per_round, pattern in ROWS:
        cells = results.get(scenario.name, {})
        baseline = cells.get(against)
        if baseline is None:
            continue
        for target in targets:
            cell = cells.get(target)
            if cell is None or target in (DIRECT, against) or len(cell.round_rates) != len(baseline.round_rates):
                continue
            values = per_round(cell, baseline)
            shown = [format(value, pattern) if not math.isnan(value) else "" for value in values]
            shown += [""] * (rounds - len(shown))
            median = _median(values)
            rows.append([label, target, *shown, format(median, pattern) if not math.isnan(median) else ""])
    header = ["figure", "target", *(f"round {number}" for number in range(1, rounds + 1)), "median of rounds"]
    return markdown(header, rows)
