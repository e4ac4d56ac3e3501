"""What the engine benchmark measures in its own process: each runtime's encode loop on all threads
and on a worker's share of them (the limit a server's throughput is read against), and single texts
one after the other (the floor of one client's latency)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

from sage_api.paths import cache_dir
from sage_engine.backends.onnx_backend import load_onnx_backend

BATCH = 64


@dataclass(frozen=True)
class Run:
    """One closed-loop run against the server."""

    texts_per_second: float
    latencies: list[float]


@dataclass(frozen=True)
class InProcess:
    """A runtime called in this process: `encode` on all threads, `encode_per_worker` on a
    worker's share; `use_all` / `use_share` set the thread counts before each layout runs."""

    name: str
    encode: Callable[[list[str]], object]
    encode_per_worker: Callable[[list[str]], object]
    use_all: Callable[[], None]
    use_share: Callable[[], None]


def torch_runtime(model: SentenceTransformer, threads: int, workers: int) -> InProcess:
    def encode(texts: list[str]) -> object:
        return model.encode(texts, batch_size=BATCH)

    return InProcess(
        "torch",
        encode,
        encode,
        lambda: torch.set_num_threads(threads),
        lambda: torch.set_num_threads(max(1, threads // workers)),
    )


def onnx_runtime(folder: Path, threads: int, workers: int) -> InProcess:
    """SAGE's ONNX backend itself (tokenizer, chunks, session), one per thread layout."""
    cache = cache_dir() / "onnx"
    whole = load_onnx_backend(str(folder), threads, cache)
    share = load_onnx_backend(str(folder), max(1, threads // workers), cache)
    return InProcess(
        "onnx",
        lambda texts: whole.embed(list(texts)),
        lambda texts: share.embed(list(texts)),
        lambda: None,
        lambda: None,
    )


def encode_loop(encode: Callable[[list[str]], object], texts: list[str], seconds: float) -> int:
    """Texts encoded in `seconds` of batches of BATCH over the corpus (the clock is read after
    every batch: a busy machine must not stretch a limit's time to whole passes of the corpus)."""
    done, start, offset = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        batch = texts[offset : offset + BATCH]
        encode(batch)
        done += len(batch)
        offset = (offset + BATCH) % len(texts)
    return done


def in_process_limit(runtime: InProcess, texts: list[str], seconds: float, workers: int) -> float:
    """The better of one loop on all threads and `workers` loops on a share each."""
    runtime.use_all()
    start = time.perf_counter()
    single = encode_loop(runtime.encode, texts, seconds / 2) / (time.perf_counter() - start)
    runtime.use_share()
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        done = sum(pool.map(lambda _: encode_loop(runtime.encode_per_worker, texts, seconds / 2), range(workers)))
    parallel = done / (time.perf_counter() - start)
    return max(single, parallel)


def one_at_a_time(runtime: InProcess, texts: list[str], seconds: float, *, share: bool) -> Run:
    """Single texts encoded one after the other, on all threads or on a worker's share: the floor
    of one client's latency (on a busy machine one thread can beat two that wait for each other)."""
    (runtime.use_share if share else runtime.use_all)()
    encode = runtime.encode_per_worker if share else runtime.encode
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    index = 0
    while (now := time.perf_counter()) < stop_at:
        encode([texts[index % len(texts)]])
        latencies.append(time.perf_counter() - now)
        index += 1
    return Run(len(latencies) / seconds, latencies)
