"""The Python client against real servers on real ports: the probe order (an explicit URL, then the
environment, then the local gateway, then local engine ports), `/v1` normalised, a fast failure that
names every URL it tried and touches nothing but loopback, and chat (streamed too), completions,
embeddings and models, sync and async, through the official OpenAI SDK."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from sage_client import EndpointNotFound, UnifiedInferenceClient
from sage_client.endpoints import local_candidates, normalise
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.net import free_port
from sage_harness.readme import section_block
from sage_harness.repo import REPO_ROOT

pytestmark = pytest.mark.engine


@pytest.fixture
def quiet_ports(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Local ports where nothing listens, so that only what a test starts can answer."""
    ports = {
        "SAGE_GATEWAY_PORT": free_port(),
        "SAGE_ENGINE_PORT": free_port(),
        "SAGE_CONTROL_PORT": free_port(),
        "SAGE_LOCAL_ENGINE_BASE_PORT": 1,
    }
    for name, port in ports.items():
        monkeypatch.setenv(name, str(port))
    monkeypatch.delenv("SAGE_CHAT_BASE_URL", raising=False)
    monkeypatch.delenv("SAGE_EMBEDDING_BASE_URL", raising=False)
    return ports


@pytest.fixture
def echo(engine_factory: Callable[..., EngineProcess]) -> EngineProcess:
    return engine_factory("deterministic", "echo")


@pytest.fixture
def gateway(
    engine_factory: Callable[..., EngineProcess], echo: EngineProcess, quiet_ports: dict[str, int]
) -> Iterator[GatewayProcess]:
    vectors = engine_factory("deterministic", "vectors")
    engines = [
        {"name": "echo", "urls": [echo.base_url]},
        {"name": "vectors", "urls": [vectors.base_url], "kind": "embedding"},
    ]
    env = {"SAGE_GATEWAY_DISCOVERY": "static", "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(engines)}
    with GatewayProcess(env=env, port=quiet_ports["SAGE_GATEWAY_PORT"]) as process:
        yield process


def test_base_urls_get_one_v1() -> None:
    for given in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/ "):
        assert normalise(given) == "http://h:1/v1"


def test_it_cannot_be_built_directly() -> None:
    with pytest.raises(TypeError, match=r"UnifiedInferenceClient\.create\(\)"):
        UnifiedInferenceClient(None, None, None)  # type: ignore[arg-type]


def test_the_local_gateway_is_chosen_and_serves_every_call(gateway: GatewayProcess, echo: EngineProcess) -> None:
    with UnifiedInferenceClient.create() as client:
        assert client.chat_base_url == f"{gateway.base_url}/v1"
        assert (client.chat_model, client.embedding_model) == ("echo", "vectors")
        answer = client.chat([{"role": "user", "content": "hello there"}], max_tokens=8)
        assert answer.choices[0].message.content
        chunks = list(client.chat([{"role": "user", "content": "hello there"}], max_tokens=8, stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == answer.choices[0].message.content
        assert client.complete("once upon", max_tokens=4).choices[0].text
        vectors = client.embed(["one", "two", "one"])
        assert len(vectors) == 3
        assert vectors[0] == vectors[2] != vectors[1]
        assert set(client.models()) >= {"echo", "vectors"}
        with pytest.raises(openai.NotFoundError):  # the SDK's own errors pass through
            client.chat([{"role": "user", "content": "x"}], model="no-such-model")

        async def asynchronous() -> tuple[str, int]:
            chat = await client.achat([{"role": "user", "content": "hi"}], max_tokens=4)
            return chat.choices[0].message.content or "", len((await client.aembed("hi"))[0])

        text, dimensions = asyncio.run(asynchronous())
        assert text
        assert dimensions == len(vectors[0])


def test_the_environment_wins_over_the_local_gateway(
    gateway: GatewayProcess, echo: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGE_CHAT_BASE_URL", echo.base_url)  # no /v1: it is added
    with UnifiedInferenceClient.create() as client:
        assert client.chat_base_url == f"{echo.base_url}/v1"
        assert client.embedding_base_url == f"{gateway.base_url}/v1"
        assert client.chat([{"role": "user", "content": "direct"}], max_tokens=4).choices[0].message.content


def test_without_a_gateway_a_local_engine_port_answers(
    engine_factory: Callable[..., EngineProcess], quiet_ports: dict[str, int]
) -> None:
    engine = engine_factory("deterministic", "solo", port=quiet_ports["SAGE_ENGINE_PORT"])
    with UnifiedInferenceClient.create() as client:
        assert client.chat_base_url == f"{engine.base_url}/v1"
        assert client.chat_model == "solo"


def test_with_nothing_running_it_fails_at_once_naming_every_local_url(quiet_ports: dict[str, int]) -> None:
    started = time.monotonic()
    with pytest.raises(EndpointNotFound) as failure:
        UnifiedInferenceClient.create()
    elapsed = time.monotonic() - started
    assert failure.value.tried == local_candidates()
    assert all(url.startswith("http://127.0.0.1:") for url in failure.value.tried)  # nothing non-local
    assert "SAGE_CHAT_BASE_URL" in str(failure.value)
    print(f"\nfailed after probing {len(failure.value.tried)} local URLs in {elapsed * 1000:.0f} ms")


def test_a_control_plane_is_started_from_manifests_and_stopped_with_the_client(
    quiet_ports: dict[str, int], tmp_path: Path
) -> None:
    manifest = REPO_ROOT / "examples" / "deterministic-test.yaml"
    client = UnifiedInferenceClient.create_with_control_plane([manifest], timeout=180)
    try:
        assert client.chat_base_url == f"http://127.0.0.1:{quiet_ports['SAGE_GATEWAY_PORT']}/v1"
        assert client.chat([{"role": "user", "content": "up?"}], max_tokens=4).choices[0].message.content
        process = client._control_plane
        assert process is not None
        assert process.poll() is None
    finally:
        client.close()
    assert process.poll() is not None, "the control plane outlived its client"
    with pytest.raises(EndpointNotFound):
        UnifiedInferenceClient.create()


def test_the_readme_example_runs_as_written(gateway: GatewayProcess, quiet_ports: dict[str, int]) -> None:
    example = section_block("From Python", "python")
    assert len(example.strip().splitlines()) == 5
    env = {**os.environ, **{name: str(port) for name, port in quiet_ports.items()}}
    command = [sys.executable, "-c", example]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    reply, dimensions = result.stdout.strip().splitlines()
    assert reply.startswith("echo")
    assert dimensions == "64 dimensions"
