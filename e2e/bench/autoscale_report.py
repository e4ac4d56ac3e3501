"""The pure half of the autoscaling benchmark (e2e/bench/autoscale_bench.py): what the watches and
samplers recorded, turned into a cold-start split, a summary of the load step, and the report.

Every time here is `time.monotonic()` on the benchmark's machine, which also runs the API server,
the kubelet and the pods: a watch event is stamped when the benchmark received it. The API's own
timestamps (whole seconds) are kept beside, as a cross-check of the kubelet's part."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sage_harness.stats import percentile

Object = Mapping[str, Any]
PHASES = (
    ("request → scale patch", "the gateway holds the request and patches llmengines/scale 0 → 1"),
    ("(a) scale patch → PodScheduled", "operator scales the Deployment, ReplicaSet creates the pod, scheduler binds"),
    ("(b1) PodScheduled → containers started", "sandbox + CNI, container started from the image on the node"),
    ("(b2) containers started → Ready", "engine process starts, loads its model, passes the startup probe"),
    ("(c) Ready → first token", "gateway discovery sees the ready endpoint, routes, first token reaches the client"),
    ("total hold: request → first token", "what the client waited"),
)


@dataclass(frozen=True)
class WatchEvent:
    seen_at: float
    kind: str
    """ADDED, MODIFIED or DELETED."""
    obj: Object


@dataclass
class PodTimeline:
    """When the benchmark first saw a pod reach each milestone, and the API's stamps of them."""

    name: str
    first_seen: float
    scheduled: float | None = None
    started: float | None = None
    ready: float | None = None
    api_stamps: dict[str, str] = field(default_factory=dict)


def condition_true(pod: Object, kind: str) -> dict[str, Any] | None:
    for item in (pod.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind and item.get("status") == "True":
            return dict(item)
    return None


def containers_running(pod: Object) -> list[str]:
    """The `startedAt` of every container once all of them run; [] before."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    started = [((s.get("state") or {}).get("running") or {}).get("startedAt") for s in statuses]
    return [str(s) for s in started] if statuses and all(started) else []


def pod_timelines(events: Iterable[WatchEvent]) -> list[PodTimeline]:
    """One timeline per pod, in the order the pods were first seen."""
    timelines: dict[str, PodTimeline] = {}
    for event in events:
        name = str(event.obj["metadata"]["name"])
        timeline = timelines.setdefault(name, PodTimeline(name, event.seen_at))
        stamps = timeline.api_stamps
        stamps.setdefault("created", str(event.obj["metadata"].get("creationTimestamp", "")))
        if timeline.scheduled is None and (scheduled := condition_true(event.obj, "PodScheduled")):
            timeline.scheduled = event.seen_at
            stamps["scheduled"] = str(scheduled.get("lastTransitionTime", ""))
        if timeline.started is None and (started := containers_running(event.obj)):
            timeline.started = event.seen_at
            stamps["started"] = max(started)
        if timeline.ready is None and (ready := condition_true(event.obj, "Ready")):
            timeline.ready = event.seen_at
            stamps["ready"] = str(ready.get("lastTransitionTime", ""))
    return list(timelines.values())


def replica_changes(events: Iterable[WatchEvent]) -> list[tuple[float, int]]:
    """(seen_at, spec.replicas) of an LLMEngine each time it changed."""
    changes: list[tuple[float, int]] = []
    for event in events:
        replicas = int((event.obj.get("spec") or {}).get("replicas", 1))
        if not changes or changes[-1][1] != replicas:
            changes.append((event.seen_at, replicas))
    return changes


@dataclass(frozen=True)
class ColdStart:
    request_sent: float
    scale_patched: float
    pod: PodTimeline
    first_token: float

    def phases(self) -> list[float]:
        """Seconds of each of PHASES, in order."""
        pod = self.pod
        if pod.scheduled is None or pod.started is None or pod.ready is None:
            msg = f"pod {pod.name} never reached every milestone: {pod}"
            raise ValueError(msg)
        return [
            self.scale_patched - self.request_sent,
            pod.scheduled - self.scale_patched,
            pod.started - pod.scheduled,
            pod.ready - pod.started,
            self.first_token - pod.ready,
            self.first_token - self.request_sent,
        ]

    def api_seconds(self) -> tuple[float, float]:
        """(PodScheduled → started, started → Ready) by the API's own stamps (whole seconds)."""
        stamps = {k: datetime.fromisoformat(v.replace("Z", "+00:00")) for k, v in self.pod.api_stamps.items() if v}
        return (
            (stamps["started"] - stamps["scheduled"]).total_seconds(),
            (stamps["ready"] - stamps["started"]).total_seconds(),
        )


def cold_start(
    sent: float, first_token: float, engine_events: Sequence[WatchEvent], pod_events: Sequence[WatchEvent]
) -> ColdStart:
    """The wake of an engine at zero by one request sent at `sent`."""
    patched = next((at for at, replicas in replica_changes(engine_events) if at >= sent and replicas >= 1), None)
    pods = [t for t in pod_timelines(pod_events) if t.first_seen >= sent]
    if patched is None or not pods:
        msg = f"no scale-up or no new pod seen after the request (scale seen: {patched}, pods: {pods})"
        raise ValueError(msg)
    return ColdStart(sent, patched, pods[0], first_token)


@dataclass(frozen=True)
class Sample:
    """One reading during the load step; `at` in seconds since the load started."""

    at: float
    spec_replicas: int
    ready_replicas: int
    gateway_inflight: int
    gateway_held: int


@dataclass(frozen=True)
class Request:
    """One request of the load step: seconds since the load started; ok when it completed."""

    sent: float
    finished: float
    ok: bool


def in_flight(requests: Sequence[Request], at: float) -> int:
    return sum(1 for r in requests if r.sent <= at < r.finished)


@dataclass(frozen=True)
class RunSummary:
    peak_spec: int
    peak_ready: int
    to_first_ready: float | None
    to_peak_spec: float | None
    to_peak_ready: float | None
    stop_to_zero: float | None
    requests: int
    failures: int
    held_latency: list[float]
    """Latencies of the requests sent before any replica was ready (they waited for the wake)."""
    steady_latency: list[float]
    """Latencies of the requests sent once the peak of ready replicas was reached, before the stop."""


def first_time(samples: Sequence[Sample], holds: Any, after: float = 0.0) -> float | None:
    return next((s.at for s in samples if s.at >= after and holds(s)), None)


def summarise(samples: Sequence[Sample], requests: Sequence[Request], load_seconds: float) -> RunSummary:
    peak_spec = max(s.spec_replicas for s in samples)
    peak_ready = max(s.ready_replicas for s in samples)
    first_ready = first_time(samples, lambda s: s.ready_replicas >= 1)
    peak_ready_at = first_time(samples, lambda s: s.ready_replicas == peak_ready)
    steady_from = peak_ready_at if peak_ready_at is not None else load_seconds
    return RunSummary(
        peak_spec=peak_spec,
        peak_ready=peak_ready,
        to_first_ready=first_ready,
        to_peak_spec=first_time(samples, lambda s: s.spec_replicas == peak_spec),
        to_peak_ready=peak_ready_at,
        stop_to_zero=(zero - load_seconds)
        if (zero := first_time(samples, lambda s: s.spec_replicas == 0, after=load_seconds)) is not None
        else None,
        requests=len(requests),
        failures=sum(1 for r in requests if not r.ok),
        held_latency=[r.finished - r.sent for r in requests if first_ready is not None and r.sent < first_ready],
        steady_latency=[r.finished - r.sent for r in requests if steady_from <= r.sent < load_seconds and r.ok],
    )


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def latency_line(name: str, values: Sequence[float]) -> str:
    if not values:
        return f"| {name} | 0 | — | — | — |"
    return (
        f"| {name} | {len(values)} | {statistics.median(values):.2f} | {percentile(values, 0.95):.2f} "
        f"| {max(values):.2f} |"
    )


def cold_start_table(wakes: Sequence[ColdStart]) -> list[str]:
    rows = [w.phases() for w in wakes]
    header = "| phase | what happens | median (s) | " + " | ".join(f"wake {i + 1}" for i in range(len(rows))) + " |"
    lines = [header, "| --- | --- | ---: | " + " | ".join("---:" for _ in rows) + " |"]
    for index, (phase, what) in enumerate(PHASES):
        values = [row[index] for row in rows]
        median = statistics.median(values)
        lines.append(f"| {phase} | {what} | {median:.2f} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return lines


def render(settings: Mapping[str, str], wakes: Sequence[ColdStart], run: RunSummary, notes: Sequence[str]) -> str:
    """The report, as Markdown; `settings` are what the run was given, `notes` its machine and method."""
    api = [w.api_seconds() for w in wakes]
    lines = [
        "# Autoscaling on a real node: a load step 0 → N → 0, and the cold start from zero",
        "",
        *notes,
        "",
        "| setting | value |",
        "| --- | --- |",
        *[f"| {name} | {value} |" for name, value in settings.items()],
        "",
        "## Cold start: the first request after scale-to-zero",
        "",
        f"One streamed chat completion sent to the engine at zero, {len(wakes)} times (the engine back at",
        "zero replicas and its pod gone before each). Each moment is when the benchmark's watch on the",
        "LLMEngine or on the engine's pods first showed it; the first token is when the client read it.",
        "",
        *cold_start_table(wakes),
        "",
        "The kubelet's part by the API's own timestamps (whole seconds, so ±1 s), per wake: "
        + ", ".join(f"{started:.0f} s + {ready:.0f} s" for started, ready in api)
        + " (PodScheduled → started, started → Ready).",
        "",
        "## The load step",
        "",
        "![replicas, requests in flight and latency over time](autoscaling.png)",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| peak spec.replicas | {run.peak_spec} |",
        f"| peak ready replicas | {run.peak_ready} |",
        f"| load start → first replica ready (s) | {seconds(run.to_first_ready)} |",
        f"| load start → spec.replicas at its peak (s) | {seconds(run.to_peak_spec)} |",
        f"| load start → ready replicas at their peak (s) | {seconds(run.to_peak_ready)} |",
        f"| load stop → spec.replicas 0 (s) | {seconds(run.stop_to_zero)} |",
        f"| requests (failed) | {run.requests} ({run.failures}) |",
        "",
        "| request latency (s) | requests | median | p95 | max |",
        "| --- | ---: | ---: | ---: | ---: |",
        latency_line("sent while no replica was ready (held for the wake)", run.held_latency),
        latency_line("sent once the ready replicas peaked, before the stop", run.steady_latency),
        "",
    ]
    return "\n".join(lines)
