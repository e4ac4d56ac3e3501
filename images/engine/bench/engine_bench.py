"""Embedding throughput of the engine server next to the in-process limit, measured in one run.

    make bench-engine            (or: python images/engine/bench/engine_bench.py --seconds 10)

1. The limit: `SentenceTransformer.encode` in this process, batched, same threads as the server.
2. The server (`python -m sage_engine`, all-MiniLM-L6-v2) under closed-loop load: single-text
   requests at concurrency 1, 8 and 32, and 16-text requests at concurrency 4.

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams, so the CPU it
takes from the (shared) machine stays small. Prints texts/s, p50/p99 latency and the ratio to the
limit, and writes the table to docs/perf/engine.md. Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import torch
from sentence_transformers import SentenceTransformer

from sage_engine.cgroup import torch_threads
from sage_testing.engine_fixtures import minilm_folder
from sage_testing.engines import EngineProcess
from sage_testing.envtest import REPO_ROOT

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


@dataclass(frozen=True)
class Result:
    name: str
    texts_per_second: float
    p50_ms: float | None
    p99_ms: float | None


def in_process_limit(model: SentenceTransformer, texts: list[str], seconds: float, batch: int) -> Result:
    model.encode(texts[:batch], batch_size=batch)  # warm up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.encode(texts, batch_size=batch)
        done += len(texts)
    return Result(f"in-process encode (batch {batch})", done / (time.perf_counter() - start), None, None)


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


async def closed_loop(port: int, texts: list[str], per_request: int, concurrency: int, seconds: float) -> Result:
    """`concurrency` clients each send a request as soon as their previous one returns."""
    bodies = [
        orjson.dumps({"input": texts[i : i + per_request]}) for i in range(0, len(texts) - per_request + 1, per_request)
    ]
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    measure_from = time.perf_counter() + min(1.0, seconds / 5)  # first second is warm-up

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
    measured = stop_at - measure_from
    name = f"server: {per_request} text{'s' if per_request > 1 else ''}/request, concurrency {concurrency}"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Result(name, len(latencies) * per_request / measured, statistics.median(ordered) * 1000, p99 * 1000)


def render(results: list[Result], limit: Result, threads: int, seconds: float) -> str:
    lines = [
        "# Engine embedding throughput",
        "",
        "Generated by `make bench-engine` (`images/engine/bench/engine_bench.py`); all rows measured in one run",
        f"on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Model: all-MiniLM-L6-v2",
        "(sentence-transformers),",
        f"torch {torch.__version__}, {threads} torch thread(s) in the server and in-process, Python",
        f"{platform.python_version()}, {seconds:.0f} s per row, short sentences (~15 tokens). The machine is shared,",
        "so absolute numbers move between runs; the ratio to the in-process limit measured in the same run is",
        "the figure to read. Aim: >= 85 % of the limit at concurrency 32.",
        "",
        "| scenario | texts/s | p50 ms | p99 ms | of in-process limit |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in [limit, *results]:
        p50 = f"{row.p50_ms:.1f}" if row.p50_ms is not None else "-"
        p99 = f"{row.p99_ms:.1f}" if row.p99_ms is not None else "-"
        ratio = row.texts_per_second / limit.texts_per_second
        lines.append(f"| {row.name} | {row.texts_per_second:.0f} | {p50} | {p99} | {ratio:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per row")
    parser.add_argument("--threads", type=int, default=torch_threads(), help="torch threads (server and in-process)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "perf" / "engine.md")
    args = parser.parse_args()
    texts = corpus(512)
    folder = minilm_folder()
    torch.set_num_threads(args.threads)
    print(f"[bench] in-process limit: {args.threads} thread(s), {args.seconds:.0f} s", file=sys.stderr)
    model = SentenceTransformer(str(folder), device="cpu")
    limit = in_process_limit(model, texts, args.seconds, 64)
    print(f"[bench] {limit.name}: {limit.texts_per_second:.0f} texts/s", file=sys.stderr)
    del model
    results = []
    with EngineProcess("sentence-transformers", str(folder), threads=args.threads) as engine:
        for per_request, concurrency in [(1, 1), (1, 8), (1, 32), (16, 4)]:
            result = asyncio.run(closed_loop(engine.port, texts, per_request, concurrency, args.seconds))
            ratio = result.texts_per_second / limit.texts_per_second
            print(f"[bench] {result.name}: {result.texts_per_second:.0f} texts/s ({ratio:.0%})", file=sys.stderr)
            results.append(result)
    table = render(results, limit, args.threads, args.seconds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    print(table)
    print(f"[bench] wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
