"""SIGTERM with a generation streaming, against a real engine process (the deterministic backend
paced like a model's decode): it turns unready and stops taking connections, lets the stream
finish within its drain time, and ends one that outlives it with an error event."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from sage_harness.engines import EngineProcess

pytestmark = pytest.mark.engine

# uvicorn re-raises the SIGTERM once it has shut down: the exit status of a clean drain.
EXITED = {0, -signal.SIGTERM}
TOKEN_SECONDS = 0.05


def paced_engine(drain_seconds: float) -> EngineProcess:
    env = {"SAGE_ENGINE_TOKEN_SECONDS": str(TOKEN_SECONDS), "SAGE_ENGINE_DRAIN_SECONDS": str(drain_seconds)}
    return EngineProcess("deterministic", "echo", env=env)


def chat(words: int) -> dict[str, object]:
    text = " ".join(f"w{n}" for n in range(words))
    return {"model": "echo", "stream": True, "max_tokens": 1024, "messages": [{"role": "user", "content": text}]}


def refuses_connections(url: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
        except httpx.TransportError:
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def sigterm_after_the_first_token(drain_seconds: float, words: int) -> Iterator[tuple[EngineProcess, Iterator[str]]]:
    """A paced engine streaming a reply of `words` tokens, sent SIGTERM once the first is out;
    yields the engine and the rest of the stream's lines."""
    with (
        paced_engine(drain_seconds) as engine,
        httpx.stream("POST", f"{engine.base_url}/v1/chat/completions", json=chat(words)) as response,
    ):
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: {"))
        engine.signal(signal.SIGTERM)
        yield engine, lines


def test_a_generation_streaming_at_sigterm_finishes() -> None:
    with sigterm_after_the_first_token(30, 40) as (engine, lines):
        assert refuses_connections(f"{engine.base_url}/health")
        rest = list(lines)
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in rest
            if line.startswith("data: {")
        )
        assert "w39" in text  # the whole reply, though SIGTERM came after its first token
        assert [line for line in rest if line][-1] == "data: [DONE]"
        assert engine.wait_exit(30) in EXITED
        assert "shutting down" in engine.log()


def test_a_generation_that_outlives_the_drain_ends_with_an_error_event() -> None:
    with sigterm_after_the_first_token(0.5, 400) as (engine, lines):
        rest = [line for line in lines if line.startswith("data: ")]
        errors = [json.loads(line[6:])["error"] for line in rest if '"error"' in line]
    assert [error["code"] for error in errors] == ["shutting_down"]
    assert rest[-1].startswith('data: {"error"')  # nothing after it: the stream ends there
    assert "w399" not in "".join(rest)  # ended by the drain, long before the reply would have
    assert engine.wait_exit(30) in EXITED
