"""Unit tests of the engine's pure modules: stop matching, request parsing,
SSE framing, deterministic models, batching policy and the generation driver."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from sage_engine import deterministic, responses
from sage_engine.batching import Batcher, BatchPolicy, ConcurrencyGauge
from sage_engine.generation import SamplingParams, run_generation
from sage_engine.protocol import ChatRequest, CompletionRequest, EmbeddingRequest, normalize_embedding_input, parse_body
from sage_engine.settings import EngineSettings
from sage_engine.stops import StopMatcher
from sage_wire.errors import WireError


def test_stop_matcher_across_pieces() -> None:
    matcher = StopMatcher(["STOP"])
    out = [matcher.feed(piece) for piece in ["hello S", "T", "OP and more"]]
    assert "".join(out) == "hello "
    assert matcher.stopped
    assert matcher.feed("ignored") == ""


def test_stop_matcher_releases_false_prefix() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("a ST") == "a "
    assert matcher.feed("ART") == "START"
    assert matcher.feed(" S") == " "
    assert matcher.flush() == "S"
    assert matcher.text() == "a START S"
    assert not matcher.stopped


def test_stop_matcher_earliest_of_several() -> None:
    matcher = StopMatcher(["world", "lo"])
    assert matcher.feed("hello world") == "hel"


def test_generation_finish_reasons() -> None:
    assert run_generation(iter(["a", "b"]), SamplingParams(max_tokens=5)).finish_reason == "stop"
    long = run_generation(iter(["a", "b", "c"]), SamplingParams(max_tokens=2))
    assert (long.text, long.completion_tokens, long.finish_reason) == ("ab", 2, "length")
    stopped = run_generation(iter(["x", "y", "z"]), SamplingParams(max_tokens=2, stop=("y",)))
    assert (stopped.text, stopped.finish_reason) == ("x", "stop")
    emitted: list[str] = []
    cancel = threading.Event()
    cancel.set()
    cut = run_generation(iter(["a", "b", "c"]), SamplingParams(max_tokens=9), emitted.append, cancel)
    assert (cut.completion_tokens, emitted) == (1, ["a"])


def test_parse_body_names_the_field() -> None:
    with pytest.raises(WireError) as caught:
        parse_body(ChatRequest, b'{"messages": [{"role": "user", "content": 3}]}')
    assert (caught.value.status, caught.value.param) == (400, "messages.0.content")
    with pytest.raises(WireError) as caught:
        parse_body(ChatRequest, b"{not json")
    assert "not valid JSON" in caught.value.message
    with pytest.raises(WireError) as caught:
        parse_body(ChatRequest, b'{"messages": [{"role": "user", "content": "x"}], "n": 2}')
    assert caught.value.param == "n"
    with pytest.raises(WireError) as caught:
        parse_body(EmbeddingRequest, b'{"input": "x", "encoding_format": "int8"}')
    assert caught.value.param == "encoding_format"
    with pytest.raises(WireError):
        parse_body(ChatRequest, b"[1, 2]")


def test_completion_prompt_shapes() -> None:
    assert parse_body(CompletionRequest, b'{"prompt": "hi"}').prompt_text_or_ids() == "hi"
    assert parse_body(CompletionRequest, b'{"prompt": ["hi"]}').prompt_text_or_ids() == "hi"
    assert parse_body(CompletionRequest, b'{"prompt": [5, 6]}').prompt_text_or_ids() == [5, 6]
    with pytest.raises(WireError) as caught:
        parse_body(CompletionRequest, b'{"prompt": ["a", "b"]}')
    assert caught.value.param == "prompt"


def test_embedding_input_shapes() -> None:
    assert normalize_embedding_input("a", 4) == ["a"]
    assert normalize_embedding_input(["a", "b"], 4) == ["a", "b"]
    assert normalize_embedding_input([1, 2], 4) == [[1, 2]]
    assert normalize_embedding_input([[1], [2, 3]], 4) == [[1], [2, 3]]
    bad: object
    for bad in (None, "", [], [""], ["a", 1], [[]], 3, {"a": 1}, [True], [[-1]], [[1.5]]):
        with pytest.raises(WireError) as caught:
            normalize_embedding_input(bad, 4)
        assert (caught.value.status, caught.value.param) == (400, "input")
    with pytest.raises(WireError, match="at most 2"):
        normalize_embedding_input(["a", "b", "c"], 2)


def test_hash_embeddings_are_deterministic_unit_vectors() -> None:
    first = deterministic.hash_embedding("hello", 32)
    assert np.array_equal(first, deterministic.hash_embedding("hello", 32))
    assert not np.array_equal(first, deterministic.hash_embedding("hello!", 32))
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-6
    assert deterministic.hash_embedding([1, 2], 8).shape == (8,)


def test_echo_reply_and_tokens() -> None:
    reply = deterministic.echo_reply([{"role": "system", "content": "s"}, {"role": "user", "content": "hi there"}])
    assert reply == "echo: hi there"
    assert list(deterministic.echo_tokens(reply, 2)) == ["echo:", " hi"]


def test_base64_is_little_endian_float32() -> None:
    vector = np.array([0.5, -1.25], dtype=np.float32)
    decoded = np.frombuffer(base64.b64decode(responses.encode_base64(vector)), dtype="<f4")
    assert np.array_equal(decoded, vector)


def test_truncated_dimensions_are_renormalised() -> None:
    vectors = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    short = responses.truncate_dimensions(vectors, 2)
    assert np.allclose(short, [[0.6, 0.8]])
    assert responses.truncate_dimensions(vectors, None) is vectors


def test_batch_policy() -> None:
    policy = BatchPolicy(max_items=4, max_wait_seconds=0.01)
    assert policy.target_requests(1, 2) == 1
    assert policy.target_requests(32, 2) == 16
    assert policy.target_requests(5, 2) == 3
    assert policy.target_requests(0, 1) == 1
    assert policy.fits(0, 10)
    assert policy.fits(2, 2)
    assert not policy.fits(3, 2)


def test_concurrency_gauge_remembers_the_recent_peak() -> None:
    gauge = ConcurrencyGauge(window_seconds=1.0)
    for _ in range(5):
        gauge.enter(0.1)
    for _ in range(5):
        gauge.leave(0.2)
    assert gauge.recent_peak(0.3) == 5  # same window
    assert gauge.recent_peak(1.5) == 5  # the previous window still counts
    assert gauge.recent_peak(2.6) == 0  # both windows passed without traffic
    gauge.enter(2.7)
    assert gauge.recent_peak(2.7) == 1


async def test_batcher_coalesces_and_returns_each_its_own() -> None:
    batches: list[list[int]] = []

    def run(items: list[int], alone: bool) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(run, executor, BatchPolicy(max_items=8, max_wait_seconds=0.005))
        requests = [[i, i + 100] for i in range(12)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.close()
    assert results == [[i * 10, (i + 100) * 10] for i in range(12)]
    assert all(len(batch) <= 8 for batch in batches)
    assert len(batches) < len(requests)


async def test_batcher_delivers_errors_to_the_batch() -> None:
    def run(items: list[int], alone: bool) -> list[int]:
        raise ValueError("boom")

    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(run, executor)
        with pytest.raises(ValueError, match="boom"):
            await batcher.submit([1])
        await batcher.close()


async def test_a_request_that_does_not_fit_starts_the_next_batch() -> None:
    batches: list[list[int]] = []

    def run(items: list[int], alone: bool) -> list[int]:
        batches.append(list(items))
        return [-item for item in items]

    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(run, executor, BatchPolicy(max_items=4, max_wait_seconds=0.05))
        results = await asyncio.gather(batcher.submit([1, 2, 3]), batcher.submit([4, 5]), batcher.submit([6]))
        await batcher.close()
    assert list(results) == [[-1, -2, -3], [-4, -5], [-6]]
    assert batches == [[1, 2, 3], [4, 5, 6]]


async def test_a_shut_executor_fails_the_request_rather_than_hanging_it() -> None:
    executor = ThreadPoolExecutor(1)
    executor.shutdown()
    batcher: Batcher[int, int] = Batcher(lambda items, alone: items, executor)
    with pytest.raises(RuntimeError, match="shutdown"):
        await batcher.submit([1])
    await batcher.close()


async def test_parallel_batch_workers_keep_callers_apart() -> None:
    running: list[int] = []
    most_at_once = 0
    lock = threading.Lock()

    alone_flags: list[bool] = []

    def run(items: list[int], alone: bool) -> list[int]:
        nonlocal most_at_once
        alone_flags.append(alone)
        with lock:
            running.append(1)
            most_at_once = max(most_at_once, len(running))
        time.sleep(0.01)
        with lock:
            running.pop()
        return [item + 1 for item in items]

    with ThreadPoolExecutor(2) as executor:
        batcher: Batcher[int, int] = Batcher(run, executor, BatchPolicy(max_items=4), workers=2)
        results = await asyncio.gather(*(batcher.submit([i, -i]) for i in range(20)))
        await batcher.close()
    assert results == [[i + 1, -i + 1] for i in range(20)]
    assert most_at_once == 2
    assert not any(alone_flags), "batches of concurrent clients share the threads"


async def test_a_lone_clients_batches_run_alone_until_others_come() -> None:
    flags: list[bool] = []

    def run(items: list[int], alone: bool) -> list[int]:
        flags.append(alone)
        time.sleep(0.002)
        return items

    with ThreadPoolExecutor(2) as executor:
        batcher: Batcher[int, int] = Batcher(run, executor, BatchPolicy(max_items=1), workers=2)
        for i in range(3):
            assert await batcher.submit([i]) == [i]
        assert flags == [True, True, True]
        await asyncio.gather(*(batcher.submit([i]) for i in range(6)))
        await batcher.submit([99])  # alone again, but the burst is recent: it may come back
        await batcher.close()
    assert flags[3:] == [False] * 7


@pytest.mark.parametrize(
    ("threads", "workers", "expected"), [(1, 2, (1, 1)), (2, 2, (2, 1)), (8, 2, (2, 4)), (3, 2, (2, 1)), (4, 1, (1, 4))]
)
def test_embedding_workers_share_the_threads(threads: int, workers: int, expected: tuple[int, int]) -> None:
    settings = EngineSettings(backend="deterministic", model="x", threads=threads, embedding_workers=workers)
    assert (settings.embedding_worker_count(), settings.threads_per_embedding_worker()) == expected
