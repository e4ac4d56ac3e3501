"""The sage-edge shell: its own health checks, the gateway at `/` by default or under a prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from sage_edge.app import normalise_prefix
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess

pytestmark = pytest.mark.engine


def edge_env(engine: EngineProcess, prefix: str | None = None) -> dict[str, str]:
    env = {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": json.dumps([{"name": "echo", "urls": [engine.base_url]}]),
    }
    if prefix is not None:
        env["SAGE_EDGE_LLM_PREFIX"] = prefix
        env["SAGE_GATEWAY_EXPOSE_REPLICA"] = "false"
    return env


@pytest.fixture
def edge_at_root(deterministic_engine: EngineProcess) -> Iterator[GatewayProcess]:
    with GatewayProcess(env=edge_env(deterministic_engine), module="sage_edge.server") as process:
        yield process


@pytest.fixture
def edge_with_prefix(deterministic_engine: EngineProcess) -> Iterator[GatewayProcess]:
    with GatewayProcess(env=edge_env(deterministic_engine, "/llm"), module="sage_edge.server") as process:
        yield process


def test_the_gateway_is_mounted_at_the_root_by_default(edge_at_root: GatewayProcess) -> None:
    assert httpx.get(f"{edge_at_root.base_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{edge_at_root.base_url}/readyz").json()["components"] == {"llm": "ready"}
    client = openai.OpenAI(base_url=f"{edge_at_root.base_url}/v1", api_key="unused", max_retries=0)
    assert "echo" in {model.id for model in client.models.list()}
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "edge"}])
    assert reply.choices[0].message.content == "echo: edge"
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(f"{edge_at_root.base_url}/v1/chat/completions", json=body)
    assert response.headers["x-sage-replica"].startswith("http://127.0.0.1:")


def test_the_gateway_is_mounted_under_a_prefix(edge_with_prefix: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=f"{edge_with_prefix.base_url}/llm/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "prefixed"}])
    assert reply.choices[0].message.content == "echo: prefixed"
    stream = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a b"}], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "echo: a b"
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
    outside = httpx.get(f"{edge_with_prefix.base_url}/v1/models")
    assert outside.status_code == 404
    assert outside.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{edge_with_prefix.base_url}/readyz").status_code == 200
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(f"{edge_with_prefix.base_url}/llm/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert "x-sage-replica" not in response.headers  # SAGE_GATEWAY_EXPOSE_REPLICA=false


def test_without_the_gateway_the_shell_only_answers_health(deterministic_engine: EngineProcess) -> None:
    env = edge_env(deterministic_engine)
    with GatewayProcess(env=env, module="sage_edge.server", args=["--no-llm"]) as edge:
        assert httpx.get(f"{edge.base_url}/readyz").json() == {"status": "ready", "components": {}}
        assert httpx.get(f"{edge.base_url}/v1/models").status_code == 404


@pytest.mark.parametrize(
    ("given", "normalised"), [(None, ""), ("", ""), ("/", ""), ("llm", "/llm"), ("/llm/", "/llm"), ("/a/b", "/a/b")]
)
def test_prefix_normalisation(given: str | None, normalised: str) -> None:
    assert normalise_prefix(given) == normalised
