"""The pure half of the discovery benchmark (e2e/bench/discovery_bench.py): which engines the rounds
pick, what each round observed, the spreads (median, p95, max) and the markdown report.

Every time is `time.monotonic()` on the benchmark's machine, from the moment just before the
EndpointSlice patch was sent to the moment the first answer in the awaited state arrived."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from sage_harness.stats import percentile


def engine_name(index: int) -> str:
    return f"e{index:04d}"


def pick_engines(engines: int, rounds: int, seed: int) -> list[int]:
    """`rounds` engine indexes, all different while there are enough engines, the same for a seed."""
    chooser = random.Random(seed)
    if rounds <= engines:
        return chooser.sample(range(engines), rounds)
    return [chooser.randrange(engines) for _ in range(rounds)]


@dataclass(frozen=True)
class Spread:
    median: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(percentile(values, 0.5), percentile(values, 0.95), max(values))


@dataclass(frozen=True)
class Observation:
    """One gateway in one round: polled until it answered as awaited."""

    seconds: float
    """From just before the patch was sent to the first answer in the awaited state."""
    polls: int
    answer_seconds: float
    """How long that last request took: the figure's resolution."""


@dataclass(frozen=True)
class Round:
    engine: str
    patch_seconds: float
    """Round trip of the readiness patch."""
    routable: tuple[Observation, ...]
    """Per gateway: endpoint made ready -> the gateway answers 200 from the engine."""
    refused: tuple[Observation, ...] = ()
    """Per gateway: endpoint made not ready -> the gateway answers 503 (empty: not measured)."""

    @property
    def every_gateway_routable(self) -> float:
        return max(observation.seconds for observation in self.routable)

    @property
    def every_gateway_refuses(self) -> float:
        return max(observation.seconds for observation in self.refused)


@dataclass(frozen=True)
class GatewayStart:
    engines: int
    """Engines its /readyz reported once ready."""
    list_seconds: float
    """Process launch -> /readyz 200 (both informers listed)."""
    cpu_seconds: float
    rss_mib: float
    peak_rss_mib: float


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    memory_gib: float
    python: str
    system: str
    load_average: tuple[float, float, float]
    """At the start of the run: what else the machine was doing."""


@dataclass(frozen=True)
class Run:
    engines: int
    command: str
    machine: Machine
    poll_interval: float
    empty_start: GatewayStart
    """A gateway with no engines at all: the start-up cost without listing."""
    starts: tuple[GatewayStart, ...]
    rounds: tuple[Round, ...]

    @property
    def gateways(self) -> int:
        return len(self.starts)


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f}"


def _spread_row(label: str, values: Sequence[float]) -> str:
    spread = Spread.of(values)
    return f"| {label} | {_ms(spread.median)} | {_ms(spread.p95)} | {_ms(spread.max)} |"


def latency_rows(run: Run) -> list[str]:
    """The latency table: per gateway, then every gateway (the slowest one of each round)."""
    rows = ["| from t0 (ms) | median | p95 | max |", "| --- | ---: | ---: | ---: |"]
    for gateway in range(run.gateways):
        rows.append(
            _spread_row(f"ready → routable, gateway {gateway + 1}", [r.routable[gateway].seconds for r in run.rounds])
        )
    rows.append(_spread_row("**ready → routable by every gateway**", [r.every_gateway_routable for r in run.rounds]))
    measured = [r for r in run.rounds if r.refused]
    if measured:
        for gateway in range(run.gateways):
            values = [r.refused[gateway].seconds for r in measured]
            rows.append(_spread_row(f"not ready → 503, gateway {gateway + 1}", values))
        rows.append(_spread_row("**not ready → 503 from every gateway**", [r.every_gateway_refuses for r in measured]))
    rows.append(_spread_row("readiness patch round trip", [r.patch_seconds for r in run.rounds]))
    answers = [o.answer_seconds for r in run.rounds for o in (*r.routable, *r.refused)]
    rows.append(_spread_row("resolution: the answering request's own time", answers))
    return rows


def start_rows(run: Run) -> list[str]:
    rows = [
        "| gateway | engines listed | launch → ready, all listed (s) | CPU to ready (s) | RSS after the list (MiB) "
        "| peak RSS (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows += [
        f"| {number} | {start.engines} | {start.list_seconds:.2f} | {start.cpu_seconds:.2f} | {start.rss_mib:.0f} "
        f"| {start.peak_rss_mib:.0f} |"
        for number, start in enumerate(run.starts, start=1)
    ]
    return rows


def round_line(number: int, outcome: Round) -> str:
    routable = " / ".join(_ms(o.seconds) for o in outcome.routable)
    line = f"- round {number}, {outcome.engine}: patch {_ms(outcome.patch_seconds)}; routable {routable}"
    if outcome.refused:
        line += f"; 503 {' / '.join(_ms(o.seconds) for o in outcome.refused)}"
    polls = " / ".join(str(o.polls) for o in (*outcome.routable, *outcome.refused))
    return f"{line} (polls {polls})"


def render(run: Run) -> str:
    machine = run.machine
    load = ", ".join(f"{value:.2f}" for value in machine.load_average)
    lines = [
        "# Discovery benchmark: engine ready → routable by every gateway replica",
        "",
        f"`{run.command}`",
        "",
        "## Method",
        "",
        "Real parts only, all on one machine: etcd + kube-apiserver (the test harness's control plane; no",
        f"controller manager, no kubelet), the CRDs of `crds/`, and {run.engines} LLMEngines (deterministic",
        "backend, one replica) in one namespace, created with `kubectl apply --server-side`. Each engine gets",
        "the status the operator writes while its one pod loads (phase Loading, 0/1 ready), written through",
        "the `/status` subresource, and one EndpointSlice labelled as the EndpointSlice controller labels",
        "it (`kubernetes.io/service-name`, `sage.ai/engine`) with one endpoint that is not ready. No kubelet",
        "runs, so the benchmark writes and patches the EndpointSlices itself, as the EndpointSlice controller",
        "would when the pod's readiness changes.",
        "",
        "One real engine process (`python -m sage_engine`, deterministic backend) answers to all the engines'",
        "names (served name plus aliases). The API server refuses loopback addresses in EndpointSlices, so",
        "the engine runs in a stand-in pod (`sage_harness.podnet`: a network namespace with a non-loopback",
        "address), and every slice points at that address and port.",
        "",
        f"{run.gateways} gateway replicas (`python -m sage_gateway`, Kubernetes discovery of the namespace)",
        "are started one after the other; each is timed from its launch until `/readyz` answers 200",
        "(discovery synced: every LLMEngine and EndpointSlice listed) and reports every engine. RSS is",
        "VmRSS from `/proc/PID/status` right after that. For comparison, a gateway with no engines at all",
        f"turned ready {run.empty_start.list_seconds:.2f} s after its launch, having used",
        f"{run.empty_start.cpu_seconds:.2f} s of CPU, at {run.empty_start.rss_mib:.0f} MiB RSS (interpreter start and",
        "imports).",
        "",
        f"Then, in each of {len(run.rounds)} rounds (after one warm-up round, not counted: it opens the",
        "gateways' connections to the engine), one engine (a seeded random pick) has its endpoint made",
        "ready with one JSON patch of its EndpointSlice; t0 is taken just before the patch is sent. One",
        "thread per gateway posts `/v1/embeddings` for that engine's model (a 503 while no replica is",
        f"ready) every {_ms(run.poll_interval)} ms until the gateway answers 200 from the engine (its",
        "`x-sage-replica` header names the stand-in pod); each figure is the time from t0 to that answer.",
        "Then the endpoint is made not ready again and the same threads poll until every gateway answers",
        "503. The gateway reads only the EndpointSlices to route; the engine's phase is not written in",
        "the rounds (the operator would write Ready separately, after the Deployment's ready count).",
        "Every slice points at the same engine, so after the warm-up each gateway reuses a kept-alive",
        "connection to it; a new pod would also cost the gateway a TCP connect.",
        "",
        "## Machine",
        "",
        f"{machine.cpus} CPUs ({machine.cpu_model}), {machine.memory_gib:.1f} GiB memory, {machine.system},",
        f"Python {machine.python}. Load average at the start: {load}. The CPUs are shared by etcd, the API",
        "server, the engine, every gateway and the polling threads (and by whatever else runs).",
        "",
        "## Results",
        "",
        *latency_rows(run),
        "",
        *start_rows(run),
        "",
        "Every round (ms from t0, gateway 1 / gateway 2 / ...; polls per gateway, routable then 503):",
        "",
        *[round_line(number, outcome) for number, outcome in enumerate(run.rounds, start=1)],
        "",
    ]
    return "\n".join(lines)
