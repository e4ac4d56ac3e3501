"""Gateway overhead beside its peers, measured side by side in one run: a fast mock upstream hit
directly, and through nginx, vllm-router (Rust), LiteLLM's proxy and SAGE's gateway (plain, with
API keys and limits on, and as 2 workers), per request.

Every server runs pinned to one CPU and the load generator to the other (`--no-pin` to let them
float). Rounds > scenarios > targets, so each comparison is taken close together in time:
non-streaming chat at 1 client (added p50) and 64 clients (req/s; also from `wrk` when it is on
PATH), streaming chat at 16 clients (added time to first token); server CPU per request is the
process tree's CPU time (/proc) over the requests, RSS the tree's at the end. Prints the tables
and writes docs/perf/gateway.md. nginx comes from PATH; vllm-router and LiteLLM from their own
virtualenvs under the user cache, which `--install-peers` creates (a peer not there is skipped).

Then the scaling scenario (`gateway_scaling`; `--no-scaling` skips it, `--scaling-only` runs it
alone): SAGE's gateway as one worker on one CPU beside two workers on two CPUs, under wrk against
an nginx that answers by itself, the setups alternating over the rounds: req/s of each, their
ratio, and the CPU per request of the gateway, nginx and wrk. It needs two CPUs, nginx and wrk.

`--profile`: after the measured rounds, SAGE's gateway (plain, and with keys and limits unless
`--no-keys`) is sampled by py-spy under the 64-client chat and the 16-client stream load (none of
it counted in the tables): flame graphs beside the output document (gateway-flame-chat.svg, ...)
and a "Where the CPU goes" section in it, the top functions by own and inclusive time from
py-spy's collapsed stacks. py-spy is installed by `--install-peers` into the user cache too; it
needs ptrace (root or CAP_SYS_PTRACE). Without py-spy, `--profile` says how to get it and fails.

    make bench-gateway                                       # everything installed, 5 rounds
    make bench-gateway BENCH_ARGS="--install-peers"          # install vllm-router and LiteLLM first
    make bench-gateway BENCH_ARGS="--install-peers --profile" # and py-spy: flame graphs too
    python gateway/bench/bench_gateway.py --rounds 2 --peers nginx,vllm-router --output /tmp/g.md
    python gateway/bench/bench_gateway.py --scaling-only --output /tmp/scaling.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uvloop
from bench import gateway_wrk
from bench.gateway_document import RunFacts, document, scaling_document, tables
from bench.gateway_flame import ProfiledRun, section, svg_name
from bench.gateway_load import Measurement, encode_request, run_load
from bench.gateway_options import parse_args
from bench.gateway_peers import PEERS, peer_targets
from bench.gateway_profile import PY_SPY, ProfileError, Sampling, preflight, profile_run, profiler
from bench.gateway_report import (
    CHAT_1,
    CHAT_64,
    DIRECT,
    SAGE,
    SAGE_KEYED,
    STREAM_16,
    WRK_64,
    Cell,
    Results,
    Scenario,
)
from bench.gateway_scaling import scaling_scenario
from bench.gateway_servers import MODEL, Layout, Target, choose_layout, sage_gateway, upstream_target

from sage_harness.process import ManagedProcess, ProcessError
from sage_harness.stats import percentile

PROMPT = "the quick brown fox jumps over the lazy dog"
UPSTREAMS = {
    "mock": "the raw-ASGI mock (`gateway/bench/mock_engine.py`, uvicorn + uvloop + httptools)",
    "deterministic": "the engine server, deterministic backend",
}
STARTUP_TIMEOUT = 180.0
"""LiteLLM's proxy takes tens of seconds to import on one busy CPU."""


def chat_body(*, stream: bool) -> bytes:
    request = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16, "stream": stream}
    return orjson.dumps(request)


def start_targets(
    args: argparse.Namespace, layout: Layout, folder: Path, launched: list[Target]
) -> tuple[list[Target], dict[str, str]]:
    """The upstream, then every other target launched at once and awaited: (the upstream and every
    target that answers, why each wanted peer is left out). A peer that never answers is left
    out; SAGE's gateway not answering ends the run. Whatever was launched is in `launched`, for
    the caller to stop whatever happens."""
    upstream = upstream_target(layout, args.upstream)
    launched.append(upstream)
    upstream.process.launch()
    upstream.wait_ready(chat_body(stream=False), STARTUP_TIMEOUT)
    wanted = [name for name in args.peers.split(",") if name]
    others, skipped = peer_targets(wanted, layout, upstream, folder, install=args.install_peers)
    others.append(sage_gateway(layout, upstream))
    if not args.no_keys:
        others.append(sage_gateway(layout, upstream, keys_folder=folder))
    if not args.no_workers:
        others.append(sage_gateway(layout, upstream, workers=2))
    launched_at = time.monotonic()
    for target in others:
        launched.append(target)
        target.process.launch()
    ready = []
    for target in others:
        try:
            target.wait_ready(chat_body(stream=False), STARTUP_TIMEOUT)
        except ProcessError as error:
            target.process.stop()
            if target.name.startswith("SAGE"):
                raise
            skipped[target.name] = f"it did not answer a chat completion within {STARTUP_TIMEOUT:.0f} s"
            print(f"==> {target.name}: skipped, {skipped[target.name]}:\n{str(error)[-2000:]}", flush=True)
            continue
        ready.append(target)
    print(f"==> {len(ready)} targets answered in {time.monotonic() - launched_at:.0f} s", flush=True)
    return [upstream, *ready], skipped


def measure_one(
    runner: asyncio.Runner, target: Target, scenario: Scenario, args: argparse.Namespace, *, seconds: float = 0.0
) -> Measurement:
    """One measurement; with `seconds`, load for that long whatever the request count (profiling)."""
    body = chat_body(stream=scenario.stream)
    headers = {"content-type": "application/json", **target.headers}
    if scenario.wrk:
        return gateway_wrk.run_wrk(
            target.url,
            body,
            headers,
            connections=scenario.concurrency,
            seconds=args.wrk_seconds,
            server_cpu=target.cpu_seconds,
        )
    request = encode_request("127.0.0.1", target.port, "/v1/chat/completions", body, headers)
    total = 10**9 if seconds else max(scenario.concurrency, int(scenario.requests * args.scale))
    try:
        return runner.run(
            run_load(
                "127.0.0.1",
                target.port,
                request,
                concurrency=scenario.concurrency,
                total=total,
                max_seconds=seconds or args.max_seconds,
                server_cpu=target.cpu_seconds,
            )
        )
    except OSError as error:  # it went away: the run goes on, the cell shows the failure
        failed = Measurement(errors=1)
        failed.reasons[f"connect: {error}"[:80]] += 1
        return failed


def exit_reason(process: ManagedProcess) -> str:
    code = process.process.returncode if process.process is not None else None
    if code is not None and code < 0:
        return f"was killed ({signal.Signals(-code).name})"
    return f"exited (code {code})"


def measure(
    targets: list[Target], scenarios: list[Scenario], args: argparse.Namespace, skipped: dict[str, str]
) -> Results:
    """Rounds > scenarios > targets; the targets' order turns by one each round, so none is
    always measured first or last. A peer that exits meanwhile leaves `targets` and the results
    (and says why in `skipped`); the upstream or SAGE's gateway exiting voids the run."""
    results: Results = {scenario.name: {} for scenario in scenarios}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        for round_number in range(args.rounds):
            shift = round_number % len(targets)
            order = targets[shift:] + targets[:shift]
            for scenario in scenarios:
                for target in order:
                    if target not in targets:
                        continue  # it left the run earlier in this round
                    sample = measure_one(runner, target, scenario, args)
                    results[scenario.name].setdefault(target.name, Cell()).add(sample)
                    p50 = f"p50 {percentile(sample.latencies, 0.5) * 1000:6.2f} ms" if sample.latencies else ""
                    print(
                        f"round {round_number + 1}/{args.rounds} {scenario.name:<28} {target.name:<17} "
                        f"{sample.rate:8.0f} req/s {p50} failed {sample.errors}",
                        flush=True,
                    )
                    if target.process.running():
                        continue
                    why = f"{exit_reason(target.process)} in round {round_number + 1} ({scenario.name})"
                    if target.name == DIRECT or target.name.startswith(SAGE):
                        sys.exit(f"==> {target.name} {why}; no figure of this run stands")
                    print(f"==> {target.name} {why}; left out of the run", flush=True)
                    skipped[target.name] = why
                    targets.remove(target)
                    for cells in results.values():
                        cells.pop(target.name, None)
    return results


def profile(targets: list[Target], args: argparse.Namespace, binary: Path, folder: Path) -> list[ProfiledRun]:
    """SAGE's gateways under the 64-client chat and 16-client stream load, sampled by py-spy;
    the flame graphs are written into `folder`. None of this load is measured."""
    sampling = Sampling(args.profile_rate, args.profile_seconds)
    runs = []
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        for target in targets:
            if target.name not in (SAGE, SAGE_KEYED):
                continue
            preflight(binary, target.pid)
            for scenario in (CHAT_64, STREAM_16):
                print(f"==> profiling {target.name}, {scenario.name} ({sampling.seconds:g} s twice)", flush=True)

                def load(seconds: float, target: Target = target, scenario: Scenario = scenario) -> Measurement:
                    return measure_one(runner, target, scenario, args, seconds=seconds)

                names = (target.name, scenario.name, svg_name(target.name, scenario.name))
                runs.append(profile_run(binary, target.pid, names=names, folder=folder, sampling=sampling, load=load))
    return runs


def machine(load_before: float, load_after: float) -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return (
        f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}; "
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after the run"
    )


def peer_versions() -> str:
    versions = []
    for peer in PEERS:
        version = peer.version()
        versions.append(f"{peer.name} {version}" if version else f"{peer.name}: not installed")
    return ", ".join(versions)


def find_profiler(args: argparse.Namespace) -> Path | None:
    """py-spy when `--profile` (installed first with `--install-peers`, whether or not this run
    profiles); ends the run, saying how to get it, when it is not there."""
    if args.install_peers:
        PY_SPY.install()
    if not args.profile:
        return None
    try:
        return profiler()
    except ProfileError as error:
        sys.exit(f"==> {error}")


def profile_section(runs: list[ProfiledRun], args: argparse.Namespace) -> str:
    load = f"the Python client's, {CHAT_64.name} and {STREAM_16.name}, on the layout above"
    return "\n" + section(runs, Sampling(args.profile_rate, args.profile_seconds).about(PY_SPY.version(), load))


def side_by_side(
    args: argparse.Namespace, layout: Layout, spy: Path | None, folder: Path, launched: list[Target]
) -> tuple[list[Target], Results, dict[str, int], list[ProfiledRun], dict[str, str]]:
    """The targets, measured side by side (and profiled with `spy`): (the targets that stayed,
    the results, their RSS at the end, the profiled runs, why each peer left out was)."""
    targets, skipped = start_targets(args, layout, folder, launched)
    results = measure(targets, scenarios(args), args, skipped)
    rss_bytes = {target.name: target.rss_bytes() for target in targets}
    try:
        runs = profile(targets, args, spy, args.output.parent) if spy is not None else []
    except ProfileError as error:
        sys.exit(f"==> {error}")
    return targets, results, rss_bytes, runs, skipped


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chosen = [CHAT_1, CHAT_64, STREAM_16]
    if not args.no_wrk and gateway_wrk.available():
        chosen.append(WRK_64)
    return chosen


def scaling(args: argparse.Namespace, cpus: list[int], folder: Path) -> str:
    """The scaling scenario's section ("" with `--no-scaling`)."""
    if args.no_scaling:
        return ""
    body = chat_body(stream=False)
    return scaling_scenario(
        cpus, folder, body, rounds=args.rounds, seconds=args.scaling_seconds, timeout=STARTUP_TIMEOUT
    )


def print_failures(results: Results) -> None:
    for scenario_name, cells in results.items():
        for target_name, cell in cells.items():
            if cell.reasons:
                print(f"failed {scenario_name} {target_name}: {dict(cell.reasons)}")


def main() -> None:
    args = parse_args(__doc__ or "")
    spy = find_profiler(args)
    cpus = sorted(os.sched_getaffinity(0))  # before this process moves onto the client's CPU
    layout = choose_layout(args.pin)
    if layout.client_cpu is not None:  # the servers get theirs from taskset
        os.sched_setaffinity(0, {layout.client_cpu})
    print(f"==> {layout.describe()}", flush=True)
    if not args.no_wrk and not gateway_wrk.available():
        print("==> wrk: not on PATH (the Debian package wrk), no wrk row", flush=True)
    load_before = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="sage-bench-gateway-"))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    launched: list[Target] = []
    targets: list[Target] = []
    results: Results = {}
    rss_bytes: dict[str, int] = {}
    runs: list[ProfiledRun] = []
    skipped: dict[str, str] = {}
    try:
        if not args.scaling_only:
            targets, results, rss_bytes, runs, skipped = side_by_side(args, layout, spy, folder, launched)
            for target in reversed(launched):  # the proxies before their upstream
                target.process.stop()
        scaling_text = scaling(args, cpus, folder)
    finally:
        for target in reversed(launched):
            target.process.stop()
        shutil.rmtree(folder, ignore_errors=True)
    for target in targets:  # they served the whole run: their logs say nothing worth keeping
        target.process.remove_log()
    names = [target.name for target in targets]
    if not args.scaling_only:
        print("\n" + tables(results, rss_bytes, scenarios(args), names))
    print_failures(results)
    if scaling_text:
        print(scaling_text)
    facts = RunFacts(
        when=f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        command=" ".join(
            ["make bench-gateway", *([f'BENCH_ARGS="{shlex.join(sys.argv[1:])}"'] if sys.argv[1:] else [])]
        ),
        machine=machine(load_before, os.getloadavg()[0]),
        layout=layout.describe(),
        versions=peer_versions(),
        upstream=UPSTREAMS[args.upstream],
        rounds=args.rounds,
        skipped=skipped,
    )
    if args.scaling_only:
        text = scaling_document(facts, scaling_text)
    else:
        text = document(facts, results, rss_bytes, scenarios(args), names) + scaling_text
    if runs:
        text += profile_section(runs, args)
        print("".join(f"\nwrote {args.output.parent / run.svg}" for run in runs))
    args.output.write_text(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
