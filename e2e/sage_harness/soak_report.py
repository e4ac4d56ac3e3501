"""What a soak measured, summed up (pure, but for `plot`): latency percentiles per window and their
drift, errors by kind, lost requests, failures no fault explains, and each process's RSS and open
files over time with their trend. `markdown` writes docs/perf/soak.md; `plot` the PNG beside it."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sage_harness.load import Outcome


@dataclass(frozen=True)
class Sample:
    """One reading of one process."""

    process: str
    at: float
    """Seconds since the soak started."""
    rss_mb: float
    open_files: int


@dataclass(frozen=True)
class Fault:
    """A replica SIGKILLed at `at` and serving again at `back` (seconds since the start)."""

    replica: str
    at: float
    back: float


@dataclass(frozen=True)
class Window:
    start: float
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def windows(outcomes: Sequence[Outcome], origin: float, width: float, duration: float) -> list[Window]:
    """Per `width`-second window of the run: requests sent in it, errors, and the latency
    percentiles of its complete answers (ms)."""
    result = []
    start = 0.0
    while start + width <= duration + 1e-9:
        sent = [o for o in outcomes if start <= o.started - origin < start + width]
        good = [o.seconds * 1000 for o in sent if o.ok]
        errors = len(sent) - len(good)
        pct = (percentile(good, 50), percentile(good, 95), percentile(good, 99))
        result.append(Window(start, len(sent), errors, *pct))
        start += width
    return result


def error_kind(outcome: Outcome) -> str:
    if outcome.lost:
        return "lost (no answer, or a stream cut without an error event)"
    if outcome.error.startswith("error event"):
        return "stream ended with an error event"
    return f"HTTP {outcome.status} with an error envelope" if outcome.status else "other"


def errors_by_kind(outcomes: Sequence[Outcome]) -> Counter[str]:
    return Counter(error_kind(o) for o in outcomes if not o.ok)


def unexplained(
    outcomes: Sequence[Outcome], faults: Sequence[Fault], origin: float, slack: float = 0.5
) -> list[Outcome]:
    """Failures of requests that were not in flight when a replica was killed: a request that
    started after a kill must find a healthy replica (the gateway retries connect failures)."""

    def explained(outcome: Outcome) -> bool:
        started, finished = outcome.started - origin, outcome.finished - origin
        return any(started <= fault.at + slack and finished >= fault.at for fault in faults)

    return [o for o in outcomes if not o.ok and not explained(o)]


def drift_percent(first: float, last: float) -> float:
    return 0.0 if first == 0 else (last - first) / first * 100


def trend_mb_per_minute(samples: Sequence[Sample]) -> float:
    """The least-squares slope of RSS over time (MB per minute); 0 with fewer than two samples."""
    if len(samples) < 2 or len({s.at for s in samples}) < 2:
        return 0.0
    slope = statistics.linear_regression([s.at for s in samples], [s.rss_mb for s in samples]).slope
    return slope * 60


@dataclass(frozen=True)
class ProcessSummary:
    process: str
    rss_start_mb: float
    rss_end_mb: float
    trend_mb_per_min: float
    files_start: int
    files_end: int


def process_summaries(samples: Sequence[Sample], warmup: float) -> list[ProcessSummary]:
    """Per process that ran throughout: RSS and open files after the warm-up and at the end, and
    the RSS trend after the warm-up."""
    summaries = []
    for name in sorted({s.process for s in samples}):
        steady = [s for s in samples if s.process == name and s.at >= warmup]
        if len(steady) < 2:
            continue
        first, last = steady[0], steady[-1]
        trend = trend_mb_per_minute(steady)
        summaries.append(ProcessSummary(name, first.rss_mb, last.rss_mb, trend, first.open_files, last.open_files))
    return summaries


@dataclass(frozen=True)
class Report:
    seconds: float
    clients: int
    mix: str
    outcomes: Sequence[Outcome]
    origin: float
    faults: Sequence[Fault]
    samples: Sequence[Sample]
    window: float

    @property
    def table(self) -> list[Window]:
        return windows(self.outcomes, self.origin, self.window, self.seconds)

    @property
    def lost(self) -> int:
        return sum(o.lost for o in self.outcomes)

    @property
    def p95_drift_percent(self) -> float:
        """p95 of the last window against the first (after the first, a warm-up)."""
        steady = [w for w in self.table[1:] if w.requests] or self.table
        return drift_percent(steady[0].p95_ms, steady[-1].p95_ms)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} seconds"


def markdown(report: Report, command: str, plot_name: str) -> str:
    outcomes = report.outcomes
    by_kind = Counter(o.kind for o in outcomes)
    errors = errors_by_kind(outcomes)
    loose = unexplained(outcomes, report.faults, report.origin)
    lines = [
        "# Soak",
        "",
        f"`{command}`: {_duration(report.seconds)} of {report.clients} clients sending {report.mix} back to",
        "back through the gateway to real engine processes (deterministic backend, 10 ms per token),",
        f"with a chat replica SIGKILLed and started again {len(report.faults)} times on a schedule.",
        "",
        "| requests | complete | errors | lost | errors no fault explains | p95 drift (last window vs first) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {len(outcomes)} | {sum(o.ok for o in outcomes)} | {sum(errors.values())} | {report.lost} | {len(loose)} "
        f"| {report.p95_drift_percent:+.1f}% |",
        "",
        "Requests by kind: " + ", ".join(f"{kind} {count}" for kind, count in sorted(by_kind.items())) + ".",
        "",
        "Errors by kind (each on a request in flight on the replica when it was killed):",
        "",
        *([f"- {kind}: {count}" for kind, count in sorted(errors.items())] or ["- none"]),
        "",
        *(
            [
                "Failures no fault explains:",
                "",
                *[f"- {o.kind} at {o.started - report.origin:.1f}s: {o.error}" for o in loose[:10]],
                "",
            ]
            if loose
            else []
        ),
        f"Latency of complete answers per {report.window:.0f}-second window (whole request; streams to the end):",
        "",
        "| from (s) | requests | errors | p50 ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {w.start:.0f} | {w.requests} | {w.errors} | {w.p50_ms:.1f} | {w.p95_ms:.1f} | {w.p99_ms:.1f} |"
            for w in report.table
        ],
        "",
        "Processes that ran throughout (after the first window's warm-up):",
        "",
        "| process | RSS start MB | RSS end MB | RSS trend MB/min | open files start | open files end |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {p.process} | {p.rss_start_mb:.1f} | {p.rss_end_mb:.1f} | {p.trend_mb_per_min:+.2f} | "
            f"{p.files_start} | {p.files_end} |"
            for p in process_summaries(report.samples, warmup=report.window)
            if p.process not in {fault.replica for fault in report.faults}
        ],
        "",
        f"![latency and RSS over time]({plot_name})",
        "",
    ]
    return "\n".join(lines)


def plot(report: Report, path: Path) -> None:
    """Latency percentiles and RSS per process over time, kills marked."""
    import matplotlib  # noqa: PLC0415 (heavy; only the report needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (latency, memory) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    table = windows(report.outcomes, report.origin, max(report.window / 4, 1.0), report.seconds)
    starts = [w.start for w in table]
    for label, values in (("p50", [w.p50_ms for w in table]), ("p95", [w.p95_ms for w in table])):
        latency.plot(starts, values, label=label)
    latency.plot(starts, [w.p99_ms for w in table], label="p99", linestyle=":")
    latency.set_ylabel("latency (ms)")
    for name in sorted({s.process for s in report.samples}):
        mine = [s for s in report.samples if s.process == name]
        memory.plot([s.at for s in mine], [s.rss_mb for s in mine], label=name)
    memory.set_ylabel("RSS (MB)")
    memory.set_xlabel("seconds")
    for axis in (latency, memory):
        for fault in report.faults:
            axis.axvline(fault.at, color="red", alpha=0.3)
        axis.legend(loc="upper right", fontsize="small")
    latency.set_title("Soak: latency and memory (red: a chat replica SIGKILLed)")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
