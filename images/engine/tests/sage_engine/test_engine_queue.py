"""The engine's bounded queue, on a real engine process (the deterministic backend paced like a
model's decode): one generation runs, `max_queued_generations` wait, the next is turned away at
once with 503 and Retry-After; the places come free when generations end, hung up or not; a
request without max_tokens gets the configured cap."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from sage_harness.engines import EngineProcess
from sage_harness.waiting import wait_until

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def busy_engine() -> Iterator[EngineProcess]:
    env = {
        "SAGE_ENGINE_TOKEN_SECONDS": "0.05",
        "SAGE_ENGINE_MAX_QUEUED_GENERATIONS": "1",
        "SAGE_ENGINE_DEFAULT_MAX_TOKENS": "3",
    }
    with EngineProcess("deterministic", "echo", env=env) as engine:
        yield engine


def chat(words: int, **extra: object) -> dict[str, object]:
    content = " ".join(f"w{n}" for n in range(words))
    return {"model": "echo", "messages": [{"role": "user", "content": content}], **extra}


def test_a_full_queue_answers_503_with_retry_after_and_frees_up(busy_engine: EngineProcess) -> None:
    url = f"{busy_engine.base_url}/v1/chat/completions"
    long = chat(600, stream=True, max_tokens=1000)
    with ExitStack() as open_streams:
        for _ in range(2):  # one running, one waiting: the queue (1) is full
            answer = open_streams.enter_context(httpx.stream("POST", url, json=long, timeout=30))
            assert answer.status_code == 200
        # Busy, not dead: what the liveness probe asks still answers.
        assert httpx.get(f"{busy_engine.base_url}/livez", timeout=5).json() == {"status": "alive"}
        refused = httpx.post(url, json=chat(3), timeout=30)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "engine_overloaded"
    # Both streams were hung up: their generations stop at their next token and leave the queue.
    wait_until(lambda: httpx.post(url, json=chat(3), timeout=30).status_code == 200, "a place in the queue", 20)


def test_a_request_without_max_tokens_gets_the_default_cap(busy_engine: EngineProcess) -> None:
    reply = httpx.post(f"{busy_engine.base_url}/v1/chat/completions", json=chat(20), timeout=30).json()
    assert reply["usage"]["completion_tokens"] == 3
    assert reply["choices"][0]["finish_reason"] == "length"
