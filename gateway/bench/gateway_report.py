"""The gateway benchmark's figures and tables (pure): measurements pooled over rounds, and the
comparison of every target per request, as markdown.

Columns are targets (direct, the peers, SAGE, SAGE with API keys and limits), rows the figures the
issue asks for: added p50 at one client, req/s at 64 clients (and the ratios to vllm-router and
to direct), added stream TTFT at 16 clients, server CPU per request and RSS.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from bench.gateway_load import Measurement

from sage_harness.stats import percentile

DIRECT = "direct"
REFERENCE = "vllm-router"
"""The peer the throughput ratio is read against."""
SAGE = "SAGE"
SAGE_KEYED = "SAGE keys+limits"
SAGE_WORKERS = "SAGE 2 workers"
"""SAGE's gateway as two workers (on the servers' one CPU: what running several costs per request)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    requests: int
    """Per target and round (also bounded in time)."""
    stream: bool = False
    wrk: bool = False
    """The load comes from `wrk` (C, not limited by the client) instead of the Python client."""


CHAT_1 = Scenario("chat, 1 client", 1, 400)
CHAT_64 = Scenario("chat, 64 clients", 64, 4000)
STREAM_16 = Scenario("stream, 16 clients", 16, 800, stream=True)
WRK_64 = Scenario("chat, 64 connections (wrk)", 64, 0, wrk=True)


@dataclass
class Cell:
    """One scenario against one target, pooled over the rounds."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    round_rates: list[float] = field(default_factory=list)
    round_p50s: list[float] = field(default_factory=list)
    """Seconds, each round's own median (nan for wrk's rounds, which time no request)."""
    round_ttft_p50s: list[float] = field(default_factory=list)
    errors: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0
    requests: int = 0

    def add(self, measurement: Measurement) -> None:
        self.latencies += measurement.latencies
        self.ttfts += measurement.ttfts
        self.round_rates.append(measurement.rate)
        self.round_p50s.append(percentile(measurement.latencies, 0.5) if measurement.latencies else math.nan)
        self.round_ttft_p50s.append(percentile(measurement.ttfts, 0.5) if measurement.ttfts else math.nan)
        self.errors += measurement.errors
        self.reasons.update(measurement.reasons)
        self.cpu_seconds += measurement.cpu_seconds
        self.requests += measurement.requests

    @property
    def rate(self) -> float:
        """Req/s, the median over rounds: a burst of other work on the machine spoils one round,
        not the figure."""
        return statistics.median(self.round_rates) if self.round_rates else math.nan

    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.5) * 1000 if self.latencies else math.nan

    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000 if self.latencies else math.nan

    def ttft_p50_ms(self) -> float:
        return percentile(self.ttfts, 0.5) * 1000 if self.ttfts else math.nan

    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1000 if self.requests else math.nan


Results = dict[str, dict[str, Cell]]
"""scenario name -> target name -> its cell."""


def ratio(value: float, reference: float) -> float:
    return value / reference if reference and not math.isnan(reference) else math.nan


def _fmt(value: float, pattern: str) -> str:
    return "" if math.isnan(value) else format(value, pattern)


def _cell(results: Results, scenario: Scenario, target: str) -> Cell | None:
    return results.get(scenario.name, {}).get(target)


def _added(results: Results, scenario: Scenario, target: str, figure: str) -> str:
    """`figure` (p50_ms or ttft_p50_ms) added over direct; direct shows its own value."""
    cell, direct = _cell(results, scenario, target), _cell(results, scenario, DIRECT)
    if cell is None or direct is None:
        return ""
    value, baseline = getattr(cell, figure)(), getattr(direct, figure)()
    if target == DIRECT:
        return f"0 ({_fmt(value, '.2f')} ms)"
    return f"{_fmt(value - baseline, '+.2f')} ms"


def _throughput_rows(results: Results, scenario: Scenario, targets: list[str], aim: str) -> list[list[str]]:
    if scenario.name not in results:
        return []
    rates = {t: cell.rate if (cell := _cell(results, scenario, t)) else math.nan for t in targets}
    label = f"req/s, {scenario.name.removeprefix('chat, ')}"
    rows = [[label, *(_fmt(rates[t], ",.0f") for t in targets), ""]]
    if REFERENCE in targets:
        to_reference = [_fmt(ratio(rates[t], rates[REFERENCE]), ".2f") for t in targets]
        rows.append([f"{label}, ratio to {REFERENCE}", *to_reference, aim])
    rows.append([f"{label}, ratio to direct", *(_fmt(ratio(rates[t], rates[DIRECT]), ".2f") for t in targets), ""])
    return rows


def comparison_table(results: Results, rss_bytes: dict[str, int], targets: list[str]) -> str:
    """The issue's table: a column per target (in `targets`' order), the aim last."""
    rows = [["added p50, 1 client", *(_added(results, CHAT_1, t, "p50_ms") for t in targets), "<= +0.2 ms"]]
    rows += _throughput_rows(results, CHAT_64, targets, ">= 0.6")
    rows += _throughput_rows(results, WRK_64, targets, ">= 0.6")
    rows.append(
        [
            "added stream TTFT p50, 16 clients",
            *(_added(results, STREAM_16, t, "ttft_p50_ms") for t in targets),
            "<= +2 ms",
        ]
    )
    cpu = [_fmt(c.cpu_ms_per_request(), ".3f") + " ms" if (c := _cell(results, CHAT_64, t)) else "" for t in targets]
    rows.append(["server CPU per request (chat, 64 clients)", *cpu, "<= 0.15 ms"])
    rows.append(
        [
            "RSS at the end (process tree)",
            *(f"{rss_bytes[t] / 1e6:.0f} MB" if t in rss_bytes else "" for t in targets),
            "<= 80 MB",
        ]
    )
    errors = [str(sum(cells[t].errors for cells in results.values() if t in cells)) for t in targets]
    rows.append(["failed requests (all scenarios)", *errors, "0"])
    return markdown(["per request", *targets, "aim (SAGE)"], rows)


def cpu_table(results: Results, scenarios: list[Scenario], targets: list[str]) -> str:
    """Server CPU µs per request by scenario (the process tree of each target; direct: the mock's
    own), what API keys and limits add to SAGE's, and how two workers' CPU per request compares
    with one's."""
    keyed = SAGE in targets and SAGE_KEYED in targets
    workers = SAGE in targets and SAGE_WORKERS in targets
    rows = []
    for scenario in scenarios:
        cells = results.get(scenario.name, {})
        per_request = {t: cells[t].cpu_ms_per_request() * 1000 if t in cells else math.nan for t in targets}
        row = [scenario.name, *(_fmt(per_request[t], ".0f") for t in targets)]
        if keyed:
            row.append(_fmt(per_request[SAGE_KEYED] - per_request[SAGE], "+.0f"))
        if workers:
            row.append(_fmt(ratio(per_request[SAGE_WORKERS], per_request[SAGE]), ".2f"))
        rows.append(row)
    extra = (["added by keys and limits"] if keyed else []) + (["2 workers / 1, CPU per request"] if workers else [])
    return markdown(["server CPU µs/request", *targets, *extra], rows)


def detail_table(results: Results, scenarios: list[Scenario], targets: list[str]) -> str:
    """Every measurement: req/s (median of rounds), p50/p99 and TTFT p50 over all requests."""
    rows = []
    for scenario in scenarios:
        for target in targets:
            cell = _cell(results, scenario, target)
            if cell is None:
                continue
            rows.append(
                [
                    scenario.name,
                    target,
                    _fmt(cell.rate, ",.0f"),
                    _fmt(cell.p50_ms(), ".2f"),
                    _fmt(cell.p99_ms(), ".2f"),
                    _fmt(cell.ttft_p50_ms(), ".2f") if scenario.stream else "",
                    str(cell.requests),
                    str(cell.errors),
                ]
            )
    header = ["scenario", "target", "req/s", "p50 ms", "p99 ms", "TTFT p50 ms", "requests", "failed"]
    return markdown(header, rows)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table, figures right-aligned (every column but the first)."""
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def read_markdown(table: str) -> dict[str, list[str]]:
    """A table of `markdown` read back: each row's first cell -> its other cells."""
    return {
        cells[0]: cells[1:]
        for line in table.splitlines()[2:]
        for cells in [[part.strip() for part in line.strip("|").split("|")]]
    }
