"""Embedding throughput of the engine server next to the in-process limits, measured in one run.

    make bench-engine            (or: python images/engine/bench/engine_bench.py --seconds 10)
    make bench-engine BENCH_ARGS=--install-peers     (installs infinity-emb once, then compares)

1. The servers (`python -m sage_engine`, all-MiniLM-L6-v2), one per runtime (torch, onnx), and
   infinity-emb's optimum (ONNX Runtime) engine when installed (`sage_harness.infinity`), under
   closed-loop load: single-text requests at concurrency 1, 8 and 32, and 16-text requests at
   concurrency 4. Each scenario's rounds go round the servers in turn, so a shared machine's
   changing load hits them alike.
2. The limits: each runtime in this process, batched (64), on the same CPU budget as the
   servers, the better of two layouts: one loop on all threads, or one loop per embedding worker
   on threads/workers threads each (the server's layout). torch's is `SentenceTransformer.encode`,
   onnx's SAGE's ONNX backend called directly. Measured right before and right after each round
   (the servers idle meanwhile).
3. One client's floor: single texts encoded one after the other in-process (on all threads, and
   on a worker's share), beside the servers' concurrency-1 rows.

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams, so the CPU it
takes from the (shared) machine stays small. Prints texts/s, p50/p99 latency and the ratio to the
limit, and writes the table and the figures the issue asks about to docs/perf/engine.md. Not a
test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import orjson
import torch
from bench.engine_inprocess import (
    BATCH,
    InProcess,
    Run,
    in_process_limit,
    one_at_a_time,
    onnx_runtime,
    torch_runtime,
)
from sentence_transformers import SentenceTransformer

from sage_harness import infinity
from sage_harness.engines import EngineProcess
from sage_harness.models import minilm_folder
from sage_harness.repo import REPO_ROOT
from sage_runtime.cgroup import available_cpus, torch_threads

SUBJECTS = ["The operator", "A tired engineer", "Our gateway", "The cluster", "Every replica", "A new model"]
VERBS = ["reconciles", "routes", "embeds", "schedules", "restarts", "scales", "measures", "serves"]
OBJECTS = [
    "the custom resources in every namespace",
    "requests to the least busy replica",
    "short sentences into dense vectors",
    "pods onto nodes with free accelerators",
    "containers that fail their probes",
    "deployments when the queue grows long",
    "latency at the ninety-ninth percentile",
    "embedding models on ordinary CPUs",
]


def corpus(size: int) -> list[str]:
    return [
        f"{SUBJECTS[i % len(SUBJECTS)]} {VERBS[(i // 3) % len(VERBS)]} {OBJECTS[(i // 7) % len(OBJECTS)]} (#{i})."
        for i in range(size)
    ]


SERVED_NAME = infinity.SERVED_NAME
PEER_NAME = "infinity-emb onnx (optimum)"


@dataclass(frozen=True)
class Result:
    """One scenario over several rounds: medians of the rounds, latency percentiles of all."""

    name: str
    texts_per_second: float
    p50_ms: float
    p99_ms: float
    limit: float | None  # in-process texts/s measured around each round (median); None for in-process rows
    ratio: float | None  # median over rounds of server / limit around that round


def summarise(name: str, runs: list[Run], limits: list[float] | None) -> Result:
    latencies = sorted(latency for run in runs for latency in run.latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Result(
        name,
        statistics.median(run.texts_per_second for run in runs),
        statistics.median(latencies) * 1000,
        p99 * 1000,
        statistics.median(limits) if limits else None,
        statistics.median(run.texts_per_second / limit for run, limit in zip(runs, limits, strict=True))
        if limits
        else None,
    )


class KeepAliveClient:
    """One HTTP/1.1 connection; posts pre-encoded JSON and reads the response body."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(headers.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1]) for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        payload = await self.reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:300]!r}")
        return payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_loop(port: int, texts: list[str], per_request: int, concurrency: int, seconds: float) -> Run:
    """`concurrency` clients each send a request as soon as their previous one returns."""
    bodies = [
        orjson.dumps({"model": SERVED_NAME, "input": texts[i : i + per_request]})
        for i in range(0, len(texts) - per_request + 1, per_request)
    ]
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    measure_from = time.perf_counter() + min(1.0, seconds / 5)  # the first second is warm-up

    async def client_loop(offset: int) -> None:
        client = KeepAliveClient(port)
        index = offset
        try:
            while (now := time.perf_counter()) < stop_at:
                await client.post("/v1/embeddings", bodies[index % len(bodies)])
                index += concurrency
                if now >= measure_from:
                    latencies.append(time.perf_counter() - now)
        finally:
            client.close()

    await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    return Run(len(latencies) * per_request / (stop_at - measure_from), latencies)


SCENARIOS = [(1, 1), (1, 8), (1, 32), (16, 4)]
PEER_SCENARIOS = [(1, 1), (1, 32), (16, 4)]


@dataclass(frozen=True)
class Server:
    """A server under test, and the in-process runtime whose limit its rows are read against."""

    name: str
    port: int
    runtime: str
    scenarios: list[tuple[int, int]]


def scenario_name(per_request: int, concurrency: int) -> str:
    return f"{per_request} text{'s' if per_request > 1 else ''}/request, concurrency {concurrency}"


def measure_servers(
    servers: list[Server], runtimes: dict[str, InProcess], texts: list[str], args: argparse.Namespace
) -> list[Result]:
    """Every scenario, its rounds interleaved across the servers, each round between two limits."""
    results = []
    for per_request, concurrency in SCENARIOS:
        subjects = [server for server in servers if (per_request, concurrency) in server.scenarios]
        runs: dict[str, list[Run]] = {server.name: [] for server in subjects}
        limits: dict[str, list[float]] = {server.name: [] for server in subjects}
        for round_number in range(1, args.rounds + 1):
            for server in subjects:
                runtime = runtimes[server.runtime]
                before = in_process_limit(runtime, texts, args.seconds / 2, args.workers)
                run = asyncio.run(closed_loop(server.port, texts, per_request, concurrency, args.seconds))
                after = in_process_limit(runtime, texts, args.seconds / 2, args.workers)
                runs[server.name].append(run)
                limits[server.name].append((before + after) / 2)
                print(
                    f"[bench] {server.name}, {scenario_name(per_request, concurrency)}, round {round_number}: "
                    f"{run.texts_per_second:.0f} texts/s, {runtime.name} limit {before:.0f}/{after:.0f} "
                    f"before/after ({run.texts_per_second / limits[server.name][-1]:.0%})",
                    file=sys.stderr,
                )
        for server in subjects:
            name = f"{server.name}: {scenario_name(per_request, concurrency)}"
            results.append(summarise(name, runs[server.name], limits[server.name]))
    return results


def one_at_a_time_name(runtime: str, share: bool) -> str:
    layout = "a worker's share of the threads" if share else "all threads"
    return f"in-process {runtime}: 1 text at a time, {layout}"


def measure_one_at_a_time(runtimes: dict[str, InProcess], texts: list[str], args: argparse.Namespace) -> list[Result]:
    results = []
    for runtime in runtimes.values():
        for share in (False, True):
            runs = [one_at_a_time(runtime, texts, args.seconds / 2, share=share) for _ in range(args.rounds)]
            results.append(summarise(one_at_a_time_name(runtime.name, share), runs, None))
            print(f"[bench] {results[-1].name}: {results[-1].p50_ms:.1f} ms p50", file=sys.stderr)
    return results


def findings(results: list[Result]) -> list[str]:
    """The figures the issue asks about, read off the rows."""
    by_name = {row.name: row for row in results}
    lines = []
    for runtime in ("torch", "onnx"):
        floors = [by_name.get(one_at_a_time_name(runtime, share)) for share in (False, True)]
        served = by_name.get(f"SAGE {runtime}: {scenario_name(1, 1)}")
        alone = min((row for row in floors if row), key=lambda row: row.p50_ms, default=None)
        if alone and served:
            lines.append(
                f"- One client, {runtime}: server p50 {served.p50_ms:.1f} ms, in-process one text at a time "
                f"{alone.p50_ms:.1f} ms (the faster layout): {served.p50_ms - alone.p50_ms:+.1f} ms."
            )
    for per_request, concurrency in PEER_SCENARIOS:
        ours = by_name.get(f"SAGE onnx: {scenario_name(per_request, concurrency)}")
        peer = by_name.get(f"{PEER_NAME}: {scenario_name(per_request, concurrency)}")
        if ours and peer:
            lines.append(
                f"- {scenario_name(per_request, concurrency)}: SAGE onnx {ours.texts_per_second:.0f} texts/s, "
                f"{PEER_NAME} {peer.texts_per_second:.0f}: {ours.texts_per_second / peer.texts_per_second:.2f}x."
            )
    return lines


def render(results: list[Result], *, threads: int, workers: int, seconds: float, rounds: int, load: str) -> str:
    about = (
        f"Generated by `make bench-engine` (`images/engine/bench/engine_bench.py`) on "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; all rows measured in one run. "
        f"Model: all-MiniLM-L6-v2 (sentence-transformers), short sentences (~15 tokens). torch "
        f"{torch.__version__}, onnxruntime {ort.__version__}, {threads} thread(s) in each server ({workers} "
        f"embedding worker(s)) and in-process, Python {platform.python_version()}, {available_cpus()} CPUs. "
        f"Each row: {rounds} rounds of {seconds:.0f} s, the servers' rounds interleaved, medians of the rounds "
        "(p50/p99 over all requests)."
    )
    limit = (
        f"The limit is the same runtime in-process in batches of {BATCH} on the same threads, the better of "
        "one loop on all threads and one loop per worker, measured right before and right after each round "
        "while the servers idle; each round's ratio uses the limit around it. torch's limit is "
        "`SentenceTransformer.encode`; onnx's is SAGE's ONNX backend called directly (tokenizer, chunks of 32, "
        f"ONNX Runtime); {PEER_NAME} is read against the onnx limit. The machine is shared with other work "
        f"(load average during the run: {load}), so absolute numbers move between runs and rounds; the "
        "ratios are the figures to read. Aims: >= 85 % of the limit at concurrency 32; SAGE onnx >= 1.1x "
        f"{PEER_NAME} in the same run; one client's p50 within 1 ms of in-process one text at a time."
    )
    lines = [
        "# Engine embedding throughput",
        "",
        *textwrap.wrap(about, 100),
        "",
        *textwrap.wrap(limit, 100),
        "",
        "| scenario | texts/s | p50 ms | p99 ms | in-process limit, texts/s | ratio to the limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results:
        limit_cell = "" if row.limit is None else f"{row.limit:.0f}"
        ratio_cell = "" if row.ratio is None else f"{row.ratio:.0%}"
        lines.append(
            f"| {row.name} | {row.texts_per_second:.0f} | {row.p50_ms:.1f} | {row.p99_ms:.1f} "
            f"| {limit_cell} | {ratio_cell} |"
        )
    return "\n".join([*lines, "", *findings(results)]) + "\n"


def start_servers(stack: contextlib.ExitStack, folder: Path, args: argparse.Namespace) -> list[Server]:
    workers = ("--embedding-workers", str(args.workers))
    servers = []
    for runtime in ("torch", "onnx"):
        flags = (*workers, "--embedding-runtime", runtime)
        engine = EngineProcess(
            "sentence-transformers", str(folder), served_model_name=SERVED_NAME, threads=args.threads, extra_args=flags
        )
        stack.enter_context(engine)
        servers.append(Server(f"SAGE {runtime}", engine.port, runtime, SCENARIOS))
    if args.install_peers:
        infinity.ensure_installed()
    if infinity.installed():
        peer = stack.enter_context(infinity.InfinityProcess(infinity.model_copy(folder), batch_size=BATCH))
        servers.append(Server(PEER_NAME, peer.port, "onnx", PEER_SCENARIOS))
    else:
        print(f"[bench] {PEER_NAME} is not installed (--install-peers installs it): no peer rows", file=sys.stderr)
    return servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per row (medians are reported)")
    parser.add_argument("--threads", type=int, default=torch_threads(), help="threads (servers and in-process)")
    parser.add_argument("--workers", type=int, default=2, help="the server's --embedding-workers")
    parser.add_argument(
        "--install-peers", action="store_true", help=f"install {PEER_NAME} into SAGE's user cache folder first"
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "perf" / "engine.md")
    args = parser.parse_args()
    loads = os.getloadavg()
    texts = corpus(512)
    folder = minilm_folder()
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(str(folder), device="cpu")
    runtimes = {
        "torch": torch_runtime(model, args.threads, args.workers),
        "onnx": onnx_runtime(folder, args.threads, args.workers),
    }
    for runtime in runtimes.values():
        runtime.encode(texts[:BATCH])  # warm up
    print(f"[bench] {args.threads} thread(s), {args.seconds:.0f} s per round", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        servers = start_servers(stack, folder, args)
        results = measure_one_at_a_time(runtimes, texts, args)
        results += measure_servers(servers, runtimes, texts, args)
    load = f"{loads[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    table = render(
        results, threads=args.threads, workers=args.workers, seconds=args.seconds, rounds=args.rounds, load=load
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    print(table)
    print(f"[bench] wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
