"""The scaling scenario: does SAGE's gateway answer N times the req/s on N CPUs as N workers?

The rest of the benchmark runs every server on one CPU, so there several workers can only show
what they cost per request. Here the gateway gets whole CPUs: one worker pinned to one CPU, and
N workers on N CPUs (SAGE_GATEWAY_WORKERS=N), each setup run in turn within every round. To make
the gateway what limits, what surrounds it costs as little as can be: the upstream is an nginx
answering every chat completion by itself with a fixed OpenAI chat.completion (`return 200`), and
the load is wrk (C). In the one-worker setup nginx and wrk have the other CPUs; in the N-worker one
they share the gateway's, so its req/s ratio is a lower bound, and each process tree's CPU time is
counted to see how much they took. Each setup has its own nginx and gateway, started together.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson
from bench.gateway_peers import NGINX_PREAMBLE
from bench.gateway_scaling_report import (
    GATEWAY,
    LOAD,
    OTHERS,
    SCALING_AIM,
    UPSTREAM,
    ScalingCell,
    ScalingSample,
    ScalingSetup,
    scaling_setups,
    scaling_summary_table,
    scaling_table,
)
from bench.gateway_servers import MODEL, PinnedGateway, Target, gateway_env, pinned_to, process_cpu_seconds
from bench.gateway_wrk import wrk

from sage_harness.net import free_port
from sage_harness.proc_tree import connections_by_worker, descendants
from sage_harness.process import ManagedProcess

SCALING_WORKERS = 2
"""Workers of the N-worker setup, each given a CPU."""
CONNECTIONS = 64
WARMUP_SECONDS = 1.0
"""One unmeasured wrk run per setup before the rounds: connections to nginx open, code paths warm."""
STATIC_ANSWER = orjson.dumps(
    {
        "id": "static",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "the quick brown fox jumps over the lazy dog"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    }
).decode()
"""What the mock upstream answers the benchmark's chat request, fixed (no single quote in it)."""
STATIC_NGINX_CONF = (
    "# The scaling scenario's upstream: one nginx worker answering by itself.\n"
    + NGINX_PREAMBLE
    + """    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /health {{ return 200 '{{"status":"ok"}}'; }}
        location / {{ return 200 '{answer}'; }}
    }}
}}
"""
)


def scaling_unavailable(cpus: list[int], workers: int) -> str:
    """Why the scenario cannot run here ("" when it can)."""
    if len(cpus) < workers:
        return f"it needs {workers} CPUs, this process may use {len(cpus)}"
    missing = [tool for tool in ("nginx", "wrk", "taskset") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not on PATH" if missing else ""


@dataclass(frozen=True)
class ScalingRig:
    """One setup's processes: its nginx and the gateway in front of it."""

    setup: ScalingSetup
    upstream: Target
    gateway: Target


def static_upstream(cpus: frozenset[int], folder: Path) -> Target:
    """nginx on `cpus` answering STATIC_ANSWER to every request but /health."""
    nginx = shutil.which("nginx")
    assert nginx is not None, "scaling_unavailable() first"
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "nginx.conf"
    config.write_text(STATIC_NGINX_CONF.format(folder=folder, port=port, answer=STATIC_ANSWER))
    command = [*pinned_to(cpus), nginx, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")]
    return Target(f"static nginx ({folder.name})", ManagedProcess("nginx-static", command), port)


def scaling_rig(setup: ScalingSetup, folder: Path) -> ScalingRig:
    """`setup`'s nginx and gateway, not yet launched."""
    upstream = static_upstream(setup.peer_cpus, folder / f"nginx-{setup.workers}")
    env = gateway_env(upstream) | {"SAGE_GATEWAY_WORKERS": str(setup.workers)}
    process = PinnedGateway(pinned_to(setup.gateway_cpus), env)
    return ScalingRig(setup, upstream, Target(f"SAGE, {setup.name}", process, process.port, ready_path="/readyz"))


def start_rigs(
    setups: tuple[ScalingSetup, ...], folder: Path, body: bytes, timeout: float, launched: list[Target]
) -> list[ScalingRig]:
    """Every setup's nginx and gateway launched at once, then awaited (ProcessError with the log of
    one that never answers). Whatever was launched is in `launched`, for the caller to stop."""
    rigs = [scaling_rig(setup, folder) for setup in setups]
    for rig in rigs:
        for target in (rig.upstream, rig.gateway):
            launched.append(target)
            target.process.launch()
    for rig in rigs:
        rig.upstream.wait_ready(body, timeout)
        rig.gateway.wait_ready(body, timeout)
    return rigs


def gateway_workers(gateway: Target) -> list[int]:
    """The worker processes of `gateway`: the supervisor's children, or the gateway itself when it
    runs as one worker."""
    return sorted(descendants(gateway.pid)) or [gateway.pid]


def busy_ticks(proc_stat: str, cpus: frozenset[int]) -> int:
    """Clock ticks `cpus` spent busy (not idle or waiting for I/O), from the text of /proc/stat."""
    total = 0
    for line in proc_stat.splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(tick) for tick in ticks[:8])
            total += user + nice + system + irq + softirq + steal
    return total


def busy_seconds(cpus: frozenset[int]) -> float:
    return busy_ticks(Path("/proc/stat").read_text(), cpus) / os.sysconf("SC_CLK_TCK")


def run_once(rig: ScalingRig, body: bytes, seconds: float) -> ScalingSample:
    """One wrk run through `rig`'s gateway, wrk on the setup's peer CPUs; each tree's CPU time,
    each gateway worker's, and how wrk's connections were spread over the workers mid-run."""
    headers = {"content-type": "application/json"}
    workers = gateway_workers(rig.gateway)
    split: list[int] = []
    counting = threading.Timer(seconds / 2, lambda: split.extend(connections_by_worker(workers, rig.gateway.port)))
    counting.start()
    workers_before = [process_cpu_seconds(pid) for pid in workers]
    used = rig.setup.gateway_cpus | rig.setup.peer_cpus
    machine_before = busy_seconds(used)
    gateway_before, upstream_before = rig.gateway.cpu_seconds(), rig.upstream.cpu_seconds()
    run = wrk(
        rig.gateway.url,
        body,
        headers,
        connections=CONNECTIONS,
        seconds=seconds,
        prefix=pinned_to(rig.setup.peer_cpus),
    )
    counting.cancel()
    cpu = {
        GATEWAY: rig.gateway.cpu_seconds() - gateway_before,
        UPSTREAM: rig.upstream.cpu_seconds() - upstream_before,
        LOAD: run.cpu_seconds,
    }
    cpu[OTHERS] = max(0.0, busy_seconds(used) - machine_before - sum(cpu.values()))
    by_worker = [process_cpu_seconds(pid) - before for pid, before in zip(workers, workers_before, strict=True)]
    return ScalingSample(
        run.requests - run.failed, run.failed, run.seconds, cpu, tuple(by_worker), tuple(split), run.error
    )


def measure_scaling(rigs: list[ScalingRig], body: bytes, *, rounds: int, seconds: float) -> list[ScalingCell]:
    """A warm-up run per rig, then `rounds` rounds of one run per rig, the order turning each
    round; a cell per rig, in `rigs`' order. A gateway or nginx that exits ends the run."""
    for rig in rigs:
        run_once(rig, body, WARMUP_SECONDS)
    cells = [ScalingCell() for _ in rigs]
    for round_number in range(rounds):
        shift = round_number % len(rigs)
        for index in [*range(shift, len(rigs)), *range(shift)]:
            rig = rigs[index]
            sample = run_once(rig, body, seconds)
            cells[index].add(sample)
            busy = ", ".join(f"{part} {cpu / sample.seconds:.2f}" for part, cpu in sample.cpu_seconds.items())
            print(
                f"round {round_number + 1}/{rounds} scaling, {rig.setup.name:<18} {sample.rate:8.0f} req/s "
                f"failed {sample.failed}; CPUs busy: {busy if sample.seconds else sample.reason}",
                flush=True,
            )
            for target in (rig.upstream, rig.gateway):
                if not target.process.running():
                    raise target.process.failure(f"exited in round {round_number + 1} of the scaling scenario")
    return cells


def scaling_scenario(cpus: list[int], folder: Path, body: bytes, *, rounds: int, seconds: float, timeout: float) -> str:
    """The scenario on `cpus` (the CPUs this process may use), `body` the chat request: its section
    of the document, or one saying why it did not run. Its processes are stopped whatever happens."""
    why_not = scaling_unavailable(cpus, SCALING_WORKERS)
    if why_not:
        print(f"==> scaling scenario: skipped, {why_not}", flush=True)
        return f"\n## Scaling with cores\n\nNot measured in this run: {why_not}.\n"
    setups = scaling_setups(cpus, SCALING_WORKERS)
    print("==> scaling scenario: " + "; ".join(setup.describe() for setup in setups), flush=True)
    launched: list[Target] = []
    try:
        rigs = start_rigs(setups, folder / "scaling", body, timeout, launched)
        cells = measure_scaling(rigs, body, rounds=rounds, seconds=seconds)
    finally:
        for target in reversed(launched):  # the gateways before their nginx
            target.process.stop()
    for target in launched:  # they served the whole scenario: their logs say nothing worth keeping
        target.process.remove_log()
    for rig, cell in zip(rigs, cells, strict=True):
        if cell.reasons:
            print(f"failed scaling {rig.setup.name}: {dict(cell.reasons)}", flush=True)
    return scaling_section(rigs, cells, rounds=rounds, seconds=seconds)


def scaling_section(rigs: list[ScalingRig], cells: list[ScalingCell], *, rounds: int, seconds: float) -> str:
    """docs/perf/gateway.md's section on the scenario: what ran where, the tables, how to read them."""
    one, many = cells
    workers = rigs[1].setup.workers
    about = (
        f"Whether N gateway workers on N CPUs answer N times one worker's req/s (the aim: at least {SCALING_AIM:.1f} N "
        f"times). Here N = {workers}. The upstream is an nginx answering every chat completion by itself with "
        f"a fixed OpenAI chat.completion ({len(STATIC_ANSWER)} bytes of JSON, `return 200`), so that it costs "
        f"as little as an upstream can; the load is wrk (C, one thread, {CONNECTIONS} connections, "
        f"{seconds:g} s per run), the same non-streaming chat request as above. Setups: "
        + "; ".join(rig.setup.describe() for rig in rigs)
        + f" (taskset). {rounds} rounds, one run of each setup per round (the order turns each round), after "
        "a warm-up run of each. CPU: each process tree's CPU time over the runs (the gateway's supervisor and "
        "workers, nginx's master and worker, from /proc; wrk's from its resource usage), per request and as the "
        "CPUs it kept busy on average; beside them, what else kept the setup's CPUs busy (their busy time in "
        "/proc/stat less the three trees': other processes, and interrupts not charged to a process). Where "
        "that is well above 0, other work shared the CPUs and the run's req/s are low."
    )
    reading = (
        f"How to read it. In the {workers}-worker setup nginx and wrk run on the gateway's CPUs and took the "
        "share shown as CPUs kept busy, so the measured req/s ratio is a lower bound of the gateway's own "
        "scaling: it is the CPUs the gateway got (the second row) times the ratio of req/s per gateway "
        "CPU-second, so it cannot read above that row however well the workers scale. The derived ratio "
        "sets their share aside: req/s per gateway CPU-second (the requests over the "
        f"gateway's CPU time) of {workers} workers over one's, times {workers}: what {workers} workers would "
        f"answer on {workers} CPUs of their own at the CPU per request measured, over one worker on one. It is "
        "derived, not measured, and assumes each worker would keep its CPU busy, which depends on how the "
        "connections are spread: each worker accepts on a socket of its own on the one port (SO_REUSEPORT), "
        "and the kernel spreads new connections over them by their addresses, so the split of wrk's "
        "connections (counted from /proc halfway through each run) and each worker's CPU are shown. Failed "
        "requests: wrk's socket errors and non-2xx answers."
    )
    return (
        "\n## Scaling with cores\n\n"
        + _paragraph(about)
        + "\n"
        + scaling_summary_table(one, many, workers)
        + "\n\n"
        + scaling_table(one, many, (rigs[0].setup, rigs[1].setup))
        + "\n\n"
        + _paragraph(reading)
    )


def _paragraph(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 100)) + "\n"
