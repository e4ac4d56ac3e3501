"""Where one client's time goes in SAGE's gateway, plain and with API keys and limits: the
request's path stage by stage (`bench.gateway_stages`), beside that client's latency direct to the
mock upstream and through each gateway, in one run, laid out like `make bench-gateway` (servers
on one CPU, the client on another). Writes docs/perf/gateway-stages.md.

    make bench-gateway-stages                          # or, with options:
    python gateway/bench/bench_gateway_stages.py --seconds 10 --output /tmp/stages.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import signal
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_gateway import STARTUP_TIMEOUT, chat_body, machine
from bench.gateway_load import encode_request, run_load
from bench.gateway_servers import (
    PinnedGateway,
    Target,
    choose_layout,
    gateway_env,
    upstream_target,
    with_bench_key,
)
from bench.gateway_stages import STAGES_FILE, stages_table

from sage_harness.repo import REPO_ROOT
from sage_harness.stats import percentile
from sage_harness.waiting import wait_until


@dataclass(frozen=True)
class StagesRun:
    when: str
    machine: str
    layout: str
    p50_ms: dict[str, float]
    """One client's p50: direct to the mock, then through each gateway (without the probes)."""
    medians: dict[str, dict[str, Any]]
    """Each probed gateway's stage medians (bench.gateway_stages.stage_medians)."""


def p50_ms(target: Target, seconds: float) -> float:
    """One client's median latency (ms) on `target` over `seconds`."""
    body = chat_body(stream=False)
    headers = {"content-type": "application/json", **target.headers}
    request = encode_request("127.0.0.1", target.port, "/v1/chat/completions", body, headers)
    measured = asyncio.run(
        run_load(
            "127.0.0.1", target.port, request, concurrency=1, total=10**9, max_seconds=seconds, server_cpu=lambda: 0.0
        )
    )
    if measured.errors or not measured.latencies:
        msg = f"{target.name}: {measured.errors} failed requests ({dict(measured.reasons)})"
        raise RuntimeError(msg)
    return percentile(measured.latencies, 0.5) * 1000


def staged_medians(gateway: Target, seconds: float, output: Path) -> dict[str, Any]:
    """The stage medians over `seconds` of one client, after a warm-up that is forgotten."""
    p50_ms(gateway, 1.0)
    os.kill(gateway.pid, signal.SIGUSR1)
    p50_ms(gateway, seconds)
    os.kill(gateway.pid, signal.SIGUSR2)
    wait_until(output.exists, "the staged gateway wrote its medians", 10.0)
    medians: dict[str, Any] = json.loads(output.read_text())
    return medians


def document(run: StagesRun) -> str:
    """docs/perf/gateway-stages.md."""
    counts = " and ".join(f"{medians['requests']} ({name})" for name, medians in run.medians.items())
    intro = (
        f"Measured on {run.when} by `make bench-gateway-stages`: {run.machine}. Layout: {run.layout}. One "
        "client (the benchmark's Python load generator) sends chat completions one after another to "
        "the mock upstream, then through SAGE's gateway in front of it, plain and requiring an API key "
        "with requests-, tokens- and concurrency limits (never reached, as in `docs/perf/gateway.md`), "
        "then through the same two gateways with probes that note when each request reaches a few of "
        f"their methods (`gateway/bench/gateway_stages.py`). Requests measured with the probes in: {counts}."
    )
    reading = (
        "How to read it. The stages follow one request from its first bytes to the last byte of its "
        "answer, and on to the bookkeeping the client does not wait for. The gateway and the mock share "
        "one CPU, as in `docs/perf/gateway.md`, so the replica's own turn falls inside these stages: in "
        "the write to the replica when the kernel runs the woken replica at once, else in the wait for "
        "the answer. The mock answers with uvicorn's own HTTP protocol, as vLLM's server does, which "
        "writes a head and its body apart. On a CPU of its own the mock wrote both before the gateway "
        "read (3,000 answers through the gateway's connection pool: 1.02 reads each); on the CPU it "
        "shares with the gateway here, the woken gateway mostly reads the head alone (1.92 reads each), "
        "and then waits for the body, the replica's turn, in the stage where the body is taken. Every "
        "stage runs with the caches the replica left. The probes cost a few tenths of a microsecond "
        "each, so the stages sum to a little more than the gateway takes alone. What keys and limits "
        "add sits in dispatch (the key, the prompt estimate, the admission), in taking the answer (the "
        "limit headers), in making it (the usage read from the body) and in the bookkeeping (settling "
        "the tokens)."
    )
    direct = run.p50_ms["direct"]
    p50_rows = [f"| direct to the mock | {direct:.3f} ms | |"]
    p50_rows += [
        f"| through {name} | {value:.3f} ms | +{value - direct:.3f} ms |"
        for name, value in run.p50_ms.items()
        if name != "direct"
    ]
    wrap = "\n".join(textwrap.wrap(intro, 100))
    return (
        f"# One client through SAGE's gateway, stage by stage\n\n{wrap}\n\n"
        "| one client, chat completions | p50 | added to direct |\n| --- | ---: | ---: |\n"
        + "\n".join(p50_rows)
        + f"\n\n{stages_table(run.medians)}\n\n"
        + "\n".join(textwrap.wrap(reading, 100))
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measurement (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "perf" / "gateway-stages.md")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=None, help="as bench_gateway.py's")
    args = parser.parse_args()
    layout = choose_layout(args.pin)
    if layout.client_cpu is not None:
        os.sched_setaffinity(0, {layout.client_cpu})
    load_before = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="sage-bench-stages-"))
    upstream = upstream_target(layout, "mock")
    keyed_env, key_headers = with_bench_key(folder)
    setups = {"SAGE": ({}, {}), "SAGE keys+limits": (keyed_env, key_headers)}
    plain: dict[str, Target] = {}
    probed: dict[str, Target] = {}
    for index, (name, (extra_env, headers)) in enumerate(setups.items()):
        env = gateway_env(upstream) | extra_env
        gateway = PinnedGateway(layout.prefix, env)
        plain[name] = Target(name, gateway, gateway.port, headers, ready_path="/readyz")
        staged_env = env | {STAGES_FILE: str(folder / f"stages-{index}.json")}
        staged = PinnedGateway(layout.prefix, staged_env, module="bench.gateway_stages")  # the probes in
        probed[name] = Target(f"{name} with probes", staged, staged.port, headers, ready_path="/readyz")
    launched: list[Target] = []
    p50s: dict[str, float] = {}
    medians: dict[str, dict[str, Any]] = {}
    try:
        for target in (upstream, *plain.values(), *probed.values()):
            launched.append(target)
            target.process.launch()
            target.wait_ready(chat_body(stream=False), STARTUP_TIMEOUT)
        for name, target in {"direct": upstream, **plain}.items():
            p50_ms(target, 1.0)
            p50s[name] = p50_ms(target, args.seconds)
        for index, (name, target) in enumerate(probed.items()):
            medians[name] = staged_medians(target, args.seconds, folder / f"stages-{index}.json")
    finally:
        for target in reversed(launched):
            target.process.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(", ".join(f"{name} p50 {value:.3f} ms" for name, value in p50s.items()) + f"\n{stages_table(medians)}")
    when = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    about = machine(load_before, os.getloadavg()[0])
    args.output.write_text(document(StagesRun(when, about, layout.describe(), p50s, medians)))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
