"""A client that hangs up stops its generation, streaming or not, on a real engine process (the
deterministic backend paced like a model's decode): the generation thread is free for the next
request instead of finishing a reply nobody reads."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from sage_harness.engines import EngineProcess

pytestmark = pytest.mark.engine

CANCELLED = "generation cancelled after"


@pytest.fixture(scope="module")
def paced() -> Iterator[EngineProcess]:
    with EngineProcess("deterministic", "echo", env={"SAGE_ENGINE_TOKEN_SECONDS": "0.05"}) as engine:
        yield engine


def long_chat(stream: bool) -> dict[str, object]:
    words = " ".join(f"w{n}" for n in range(600))  # 30 s of decode at 0.05 s a token
    return {"model": "echo", "stream": stream, "max_tokens": 1024, "messages": [{"role": "user", "content": words}]}


def wait_for_log(engine: EngineProcess, text: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while engine.log().count(text) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"the engine never logged {text!r} x{count}:\n{engine.log_tail()}")
        time.sleep(0.1)


def hang_up(engine: EngineProcess, stream: bool) -> None:
    """Ask for the long reply and leave: after its first bytes (streamed) or a second (whole)."""
    url = f"{engine.base_url}/v1/chat/completions"
    if stream:
        with httpx.stream("POST", url, json=long_chat(stream=True), timeout=20) as answer:
            next(answer.iter_bytes())
        return
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=long_chat(stream=False), timeout=1)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_client_that_hangs_up_stops_the_generation(paced: EngineProcess, stream: bool) -> None:
    before = paced.log().count(CANCELLED)
    hang_up(paced, stream)
    wait_for_log(paced, CANCELLED, before + 1)
    # The one generation thread is free again: a short request is answered, not queued for 30 s.
    short = {"model": "echo", "messages": [{"role": "user", "content": "next"}]}
    reply = httpx.post(f"{paced.base_url}/v1/chat/completions", json=short, timeout=20)
    assert reply.json()["choices"][0]["message"]["content"] == "echo: next"
