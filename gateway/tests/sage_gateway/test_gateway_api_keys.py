"""API keys through a real gateway process (keys from a file of APIKey manifests, as `sage up`
and tests use them) in front of real engines, called with the official `openai` and `anthropic`
clients: 401s, per-key models, RPM/TPM/concurrency 429s with their headers, usage on streams.
The same keys from the API server, created and revoked with kubectl: test_gateway_api_keys_kube.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from sage_api.apikey import key_hash, new_key
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatedUpstream, GatewayProcess
from sage_harness.waiting import wait_until

pytestmark = pytest.mark.engine

KEYS = {name: new_key() for name in ("open", "echo-only", "rpm", "tpm", "single")}
SPECS: dict[str, dict[str, Any]] = {
    "open": {},
    "echo-only": {"models": ["echo"]},
    "rpm": {"requestsPerMinute": 2},
    "tpm": {"tokensPerMinute": 60},
    "single": {"maxConcurrentRequests": 1},
}


def manifests() -> str:
    documents = []
    for name, spec in SPECS.items():
        body = {"keyHash": key_hash(KEYS[name]), **spec}
        document = {"apiVersion": "sage.ai/v1alpha1", "kind": "APIKey", "metadata": {"name": name}, "spec": body}
        documents.append(json.dumps(document))
    return "\n---\n".join(documents)


@pytest.fixture(scope="module")
def gateway(
    deterministic_engine: EngineProcess, gated_upstream: GatedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    keys_file: Path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys_file.write_text(manifests())
    engines = [
        {"name": "echo", "urls": [deterministic_engine.base_url]},
        {"name": "other-tenants-model", "urls": [deterministic_engine.base_url]},
        {"name": "gated", "urls": [gated_upstream.base_url]},
    ]
    env = {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(engines),
        "SAGE_GATEWAY_AUTH": "api-keys",
        "SAGE_GATEWAY_API_KEYS_FILE": str(keys_file),
    }
    with GatewayProcess(env=env) as process:
        yield process


def client(gateway: GatewayProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0)


def chat(client: openai.OpenAI, model: str = "echo", text: str = "hi") -> str | None:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content


def test_no_key_or_a_wrong_key_gets_401_in_both_protocols(gateway: GatewayProcess) -> None:
    missing = httpx.post(f"{gateway.base_url}/v1/chat/completions", json={"model": "echo", "messages": []})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError) as wrong:
        chat(client(gateway, "sk-sage-not-a-key"))
    assert wrong.value.code == "invalid_api_key"
    assert "not-a-key" not in str(wrong.value)
    answer = httpx.get(f"{gateway.base_url}/v1/models")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-sage-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        claude.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert chat(client(gateway, KEYS["open"])) == "echo: hi"


def test_a_key_sees_and_uses_only_its_models(gateway: GatewayProcess) -> None:
    limited = client(gateway, KEYS["echo-only"])
    assert [model.id for model in limited.models.list()] == ["echo"]
    assert chat(limited) == "echo: hi"
    with pytest.raises(openai.NotFoundError) as hidden:
        chat(limited, "other-tenants-model")
    with pytest.raises(openai.NotFoundError) as absent:
        chat(limited, "no-such-model")
    # A model the key may not use looks exactly like one that does not exist.
    assert str(hidden.value).replace("other-tenants-model", "X") == str(absent.value).replace("no-such-model", "X")
    assert "gated" not in str(hidden.value)
    assert {model.id for model in client(gateway, KEYS["open"]).models.list()} >= {"echo", "other-tenants-model"}


def test_requests_per_minute_raise_rate_limit_errors_with_headers(gateway: GatewayProcess) -> None:
    limited = client(gateway, KEYS["rpm"])
    first = limited.chat.completions.with_raw_response.create(model="echo", messages=[{"role": "user", "content": "a"}])
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    chat(limited)
    with pytest.raises(openai.RateLimitError) as limited_out:
        chat(limited)
    error = limited_out.value
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert chat(client(gateway, KEYS["open"])) == "echo: hi"  # another key is not limited by it
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert 'sage_gateway_rate_limited_total{key="rpm",limit="requests"} 1.0' in metrics
    assert KEYS["rpm"] not in metrics


def test_tokens_are_counted_from_usage_on_streams_that_did_not_ask_for_it(gateway: GatewayProcess) -> None:
    limited = client(gateway, KEYS["tpm"])
    stream = limited.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "count my tokens"}], stream=True
    )
    chunks = list(stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == "echo: count my tokens"
    assert all(chunk.usage is None for chunk in chunks)  # the client did not ask for usage

    # Counted when the stream's last chunk is out, which the client may see first.
    def tokens_counted() -> str | None:
        text = httpx.get(f"{gateway.base_url}/metrics").text
        return text if 'key_tokens_total{key="tpm"' in text else None

    metrics = wait_until(tokens_counted, "the stream's tokens in the metrics", 10)
    counted = {
        line.split("kind=")[1].split('"')[1]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("sage_gateway_key_tokens_total{") and 'key="tpm"' in line and 'model="echo"' in line
    }
    assert counted["prompt"] > 0  # per key, model and kind, as the engine reported them
    assert counted["completion"] > 0
    requests = [line for line in metrics.splitlines() if line.startswith('sage_gateway_key_requests_total{key="tpm"')]
    assert requests
    assert all('model="echo"' in line for line in requests)
    with pytest.raises(openai.RateLimitError) as too_big:
        chat(limited, text="x" * 1000)  # about 250 tokens: more than the whole minute's 60
    assert too_big.value.type == "tokens"
    asked = limited.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "and now?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert any(chunk.usage is not None and chunk.usage.total_tokens > 0 for chunk in asked)


def test_anthropic_clients_use_x_api_key_and_get_their_rate_limit_shape(gateway: GatewayProcess) -> None:
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEYS["rpm"], max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as limited:  # the earlier test used this key's minute
        claude.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert limited.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert "anthropic-ratelimit-requests-reset" in limited.value.response.headers
    ok = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEYS["open"], max_retries=0)
    reply = ok.messages.create(model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert reply.usage.input_tokens > 0


async def test_concurrency_is_bounded_per_key_and_keys_never_reach_engines(
    gateway: GatewayProcess, gated_upstream: GatedUpstream
) -> None:
    gated_upstream.reset()
    headers = {"authorization": f"Bearer {KEYS['single']}"}
    body = {"model": "gated", "messages": [{"role": "user", "content": "x"}], "hold": True}
    async with httpx.AsyncClient(base_url=gateway.base_url, headers=headers, timeout=30) as http:
        held = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        await asyncio.wait_for(gated_upstream.received.wait(), 10)
        second = await http.post("/v1/chat/completions", json={**body, "hold": False})
        assert second.status_code == 429
        assert "at once" in second.json()["error"]["message"]
        gated_upstream.release.set()
        assert (await held).status_code == 200
        third = await http.post("/v1/chat/completions", json={**body, "hold": False})
        assert third.status_code == 200
    seen = {name.lower() for request in gated_upstream.seen_headers for name in request}
    assert "authorization" not in seen
    assert "x-api-key" not in seen
