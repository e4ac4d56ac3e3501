"""The scaling scenario's figures and table (pure): SAGE's gateway as one worker on one CPU beside
N workers on N CPUs, under wrk against an nginx that answers by itself.

Each run is one `ScalingSample`: wrk's requests and failures, and the CPU time each process tree
(the gateway, nginx, wrk) took meanwhile. A `ScalingCell` pools one setup's samples over the
rounds; `scaling_table` sets the setups side by side with the ratio of the N-worker one to the
one-worker one, measured (req/s, a lower bound: nginx and wrk share the N CPUs) and derived (req/s
per CPU-second of the gateway, times N: as if the gateway had the N CPUs to itself).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from bench.gateway_report import markdown, ratio

GATEWAY = "gateway"
UPSTREAM = "nginx"
LOAD = "wrk"
PARTS = (GATEWAY, UPSTREAM, LOAD)
"""The process trees whose CPU time each sample counts."""
OTHERS = "everything else"
"""The setup's CPUs' busy time (/proc/stat) less the trees': other work on the machine."""
SCALING_AIM = 0.8
"""Of N times one worker's req/s, on N CPUs (issue 16)."""


@dataclass(frozen=True)
class ScalingSample:
    """One wrk run against one setup."""

    completed: int
    failed: int
    seconds: float
    cpu_seconds: dict[str, float]
    """Process tree (`PARTS`, and `OTHERS`) -> its CPU time over the run."""
    worker_cpu_seconds: tuple[float, ...] = ()
    """Each gateway worker's CPU time over the run."""
    worker_connections: tuple[int, ...] = ()
    """How many of wrk's connections each worker held mid-run."""
    reason: str = ""
    """Why wrk reported nothing (then the counts are 0)."""

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


@dataclass
class ScalingCell:
    """One setup, pooled over the rounds."""

    round_rates: list[float] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    cpu_seconds: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    unreported_runs: int = 0
    """Runs without wrk's summary (their reasons are in `reasons`)."""
    worker_cpu_seconds: list[float] = field(default_factory=list)
    """Summed over the runs: the busiest worker of each run's, then the next, ..."""
    connection_splits: list[tuple[int, ...]] = field(default_factory=list)
    """Each run's connections per worker, the most first."""

    def add(self, sample: ScalingSample) -> None:
        self.round_rates.append(sample.rate)
        self.completed += sample.completed
        self.failed += sample.failed
        self.seconds += sample.seconds
        self.cpu_seconds.update(sample.cpu_seconds)
        for index, seconds in enumerate(sorted(sample.worker_cpu_seconds, reverse=True)):
            if index == len(self.worker_cpu_seconds):
                self.worker_cpu_seconds.append(0.0)
            self.worker_cpu_seconds[index] += seconds
        if sample.worker_connections:
            self.connection_splits.append(tuple(sorted(sample.worker_connections, reverse=True)))
        if sample.reason:
            self.unreported_runs += 1
            self.reasons[sample.reason[:80]] += 1
        if sample.failed:
            self.reasons["wrk: socket errors or non-2xx"] += sample.failed

    @property
    def rate(self) -> float:
        """Req/s, the median over rounds."""
        return statistics.median(self.round_rates) if self.round_rates else math.nan

    def cpu_us_per_request(self, part: str) -> float:
        requests = self.completed + self.failed
        return self.cpu_seconds[part] / requests * 1e6 if requests else math.nan

    def cpus_used(self, part: str) -> float:
        """How many CPUs `part` kept busy on average over the runs."""
        return self.cpu_seconds[part] / self.seconds if self.seconds else math.nan

    def cpus_used_by_workers(self) -> list[float]:
        """How many CPUs each worker kept busy on average, the busiest first."""
        return [seconds / self.seconds for seconds in self.worker_cpu_seconds] if self.seconds else []

    def requests_per_gateway_cpu_second(self) -> float:
        """What one CPU-second of the gateway answered: its req/s if it had whole CPUs to itself."""
        cpu = self.cpu_seconds[GATEWAY]
        return self.completed / cpu if cpu else math.nan


@dataclass(frozen=True)
class ScalingSetup:
    """Where one run's processes are: the gateway's `workers` on `gateway_cpus`, nginx and wrk on
    `peer_cpus`."""

    workers: int
    gateway_cpus: frozenset[int]
    peer_cpus: frozenset[int]

    @property
    def name(self) -> str:
        workers = "1 worker" if self.workers == 1 else f"{self.workers} workers"
        cpus = "1 CPU" if len(self.gateway_cpus) == 1 else f"{len(self.gateway_cpus)} CPUs"
        return f"{workers} on {cpus}"

    def describe(self) -> str:
        shared = "the same CPUs" if self.peer_cpus == self.gateway_cpus else _cpus(self.peer_cpus)
        return f"{self.name}: the gateway on {_cpus(self.gateway_cpus)}, nginx and wrk on {shared}"


def _cpus(cpus: frozenset[int]) -> str:
    return ("CPU " if len(cpus) == 1 else "CPUs ") + ",".join(str(cpu) for cpu in sorted(cpus))


def scaling_setups(cpus: list[int], workers: int) -> tuple[ScalingSetup, ScalingSetup]:
    """One worker on the last of `cpus` with nginx and wrk on the others, and `workers` workers on
    the last `workers` of `cpus` with nginx and wrk on those too (`cpus` has `workers` or more)."""
    ordered = sorted(cpus)
    if workers < 2 or len(ordered) < workers:
        msg = f"{workers} workers on {len(ordered)} CPUs: needs 2 or more workers and a CPU each"
        raise ValueError(msg)
    chosen = frozenset(ordered[-workers:])
    one = ScalingSetup(1, frozenset(ordered[-1:]), chosen - {ordered[-1]})
    return one, ScalingSetup(workers, chosen, chosen)


def _fmt(value: float, pattern: str) -> str:
    return "" if math.isnan(value) else format(value, pattern)


def scaling_table(one: ScalingCell, many: ScalingCell, setups: tuple[ScalingSetup, ScalingSetup]) -> str:
    """The setups side by side, and the N-worker one over the one-worker one."""
    workers = setups[1].workers
    rows = [
        ["req/s (median of rounds)", _fmt(one.rate, ",.0f"), _fmt(many.rate, ",.0f"), _ratio(many.rate, one.rate)],
    ]
    for part in PARTS:
        rows.append(
            [
                f"{part} CPU µs/request",
                _fmt(one.cpu_us_per_request(part), ".1f"),
                _fmt(many.cpu_us_per_request(part), ".1f"),
                _ratio(many.cpu_us_per_request(part), one.cpu_us_per_request(part)),
            ]
        )
    for part in (*PARTS, OTHERS):
        rows.append(
            [f"{part}: CPUs kept busy", _fmt(one.cpus_used(part), ".2f"), _fmt(many.cpus_used(part), ".2f"), ""]
        )
    rows.append(["gateway: CPUs kept busy by each worker, busiest first", _workers(one), _workers(many), ""])
    rows.append(["wrk's connections per worker mid-run, each run", _splits(one), _splits(many), ""])
    per_cpu_one, per_cpu_many = one.requests_per_gateway_cpu_second(), many.requests_per_gateway_cpu_second()
    rows.append(
        [
            "req/s per gateway CPU-second",
            _fmt(per_cpu_one, ",.0f"),
            _fmt(per_cpu_many, ",.0f"),
            _ratio(per_cpu_many, per_cpu_one),
        ]
    )
    rows.append(["failed requests (and runs wrk did not report)", _failures(one), _failures(many), ""])
    header = ["per run", setups[0].name, setups[1].name, f"{workers} workers / 1"]
    return markdown(header, rows)


def _workers(cell: ScalingCell) -> str:
    return " + ".join(f"{cpus:.2f}" for cpus in cell.cpus_used_by_workers())


def _splits(cell: ScalingCell) -> str:
    return ", ".join("+".join(str(count) for count in split) for split in cell.connection_splits)


def _failures(cell: ScalingCell) -> str:
    return str(cell.failed) + (f" ({cell.unreported_runs} runs)" if cell.unreported_runs else "")


def _ratio(value: float, reference: float) -> str:
    return _fmt(ratio(value, reference), ".2f")


def derived_scaling(one: ScalingCell, many: ScalingCell, workers: int) -> float:
    """N times (req/s per gateway CPU-second, N workers over one): the N workers' req/s over one
    worker's had the gateway had its N CPUs to itself, at the CPU per request measured."""
    return workers * ratio(many.requests_per_gateway_cpu_second(), one.requests_per_gateway_cpu_second())


def scaling_summary(one: ScalingCell, many: ScalingCell, workers: int) -> list[list[str]]:
    """The two scaling figures beside the aim (N times 0.8), and the CPUs the layout left the
    gateway: the measured ratio is that times the ratio of req/s per gateway CPU-second."""
    aim = f">= {SCALING_AIM * workers:.1f}"
    return [
        [f"measured: req/s, {workers} workers over 1 (a lower bound)", _ratio(many.rate, one.rate), aim],
        [
            f"the most it could read here: the CPUs the gateway got, {workers} workers over 1 "
            "(nginx and wrk took the rest)",
            _ratio(many.cpus_used(GATEWAY), one.cpus_used(GATEWAY)),
            "",
        ],
        [
            f"derived: req/s per gateway CPU-second, {workers} workers over 1, times {workers}",
            _fmt(derived_scaling(one, many, workers), ".2f"),
            aim,
        ],
    ]


def scaling_summary_table(one: ScalingCell, many: ScalingCell, workers: int) -> str:
    return markdown(
        [f"{workers} workers on {workers} CPUs vs 1 on 1", "ratio", "aim"], scaling_summary(one, many, workers)
    )
