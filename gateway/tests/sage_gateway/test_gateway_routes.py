"""Every gateway route through a real gateway process in front of real engine processes (the
deterministic backend and MiniLM), called with the official `openai` and `anthropic` clients."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatedUpstream, GatewayProcess
from sage_harness.net import free_port
from sage_harness.repo import source_pythonpath

pytestmark = pytest.mark.engine

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def minilm_engine(minilm_path: Path) -> Iterator[EngineProcess]:
    with EngineProcess("sentence-transformers", str(minilm_path), served_model_name="minilm") as engine:
        yield engine


@pytest.fixture
def gated(gated_upstream: GatedUpstream) -> GatedUpstream:
    """The module's gated upstream, with its events and records fresh for this test."""
    gated_upstream.reset()
    return gated_upstream


@pytest.fixture(scope="module")
def gateway(
    deterministic_engine: EngineProcess, minilm_engine: EngineProcess, gated_upstream: GatedUpstream
) -> Iterator[GatewayProcess]:
    engines = [
        {"name": "echo", "aliases": ["echo-alias"], "urls": [deterministic_engine.base_url]},
        {"name": "minilm", "kind": "embedding", "urls": [minilm_engine.base_url]},
        {"name": "gated", "urls": [gated_upstream.base_url]},
        {"name": "down", "urls": []},
        {"name": "broken", "urls": [f"http://127.0.0.1:{free_port()}"]},
    ]
    env = {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(engines),
        "SAGE_GATEWAY_MAX_BODY_BYTES": str(MAX_BODY),
        "SAGE_GATEWAY_RETRY_AFTER_SECONDS": "7",
    }
    with GatewayProcess(env=env) as process:
        yield process


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def direct(deterministic_engine: EngineProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{deterministic_engine.base_url}/v1", api_key="unused", max_retries=0)


def test_models_lists_served_names_and_aliases(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"echo", "echo-alias", "minilm", "gated"} <= ids
    assert "down" not in ids  # known but without a ready replica


def test_chat_completion_matches_the_engine(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello gateway"}]
    through = client.chat.completions.create(model="echo", messages=messages, max_tokens=16)
    straight = direct.chat.completions.create(model="echo", messages=messages, max_tokens=16)
    assert through.choices[0].message.content == straight.choices[0].message.content
    assert through.choices[0].message.content == "echo: hello gateway"


def test_alias_routes_to_the_engine(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="echo-alias", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"


def test_chat_stream_arrives_in_order(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "one two three four five"}]

    def deltas(api: openai.OpenAI) -> list[str]:
        stream = api.chat.completions.create(model="echo", messages=messages, stream=True)
        return [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]

    through = deltas(client)
    assert through == deltas(direct)
    assert len([piece for piece in through if piece]) >= 5
    assert "".join(through) == "echo: one two three four five"


def test_completions_plain_and_streamed(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    plain = client.completions.create(model="echo", prompt="alpha beta", max_tokens=8)
    assert (
        plain.choices[0].text
        == direct.completions.create(model="echo", prompt="alpha beta", max_tokens=8).choices[0].text
    )
    pieces = [
        chunk.choices[0].text for chunk in client.completions.create(model="echo", prompt="alpha beta", stream=True)
    ]
    assert "".join(pieces) == plain.choices[0].text


def test_embeddings_are_identical_to_the_engines(
    client: openai.OpenAI, deterministic_engine: EngineProcess, minilm_engine: EngineProcess
) -> None:
    for engine, model in ((deterministic_engine, "echo"), (minilm_engine, "minilm")):
        engine_client = openai.OpenAI(base_url=f"{engine.base_url}/v1", api_key="unused", max_retries=0)
        texts = ["the cat sat on the mat", "a dog in the fog"]
        through = client.embeddings.create(model=model, input=texts)
        straight = engine_client.embeddings.create(model=model, input=texts)
        assert [item.embedding for item in through.data] == [item.embedding for item in straight.data]
        assert len(through.data[0].embedding) == (384 if model == "minilm" else len(straight.data[0].embedding))


def test_anthropic_messages(gateway: GatewayProcess) -> None:
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key="unused", max_retries=0)
    message = claude.messages.create(
        model="echo", max_tokens=32, system="Be terse.", messages=[{"role": "user", "content": "hi there"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hi there"
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.output_tokens > 0


def test_anthropic_messages_stream(gateway: GatewayProcess) -> None:
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key="unused", max_retries=0)
    with claude.messages.stream(
        model="echo", max_tokens=32, messages=[{"role": "user", "content": "stream me please"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "echo: stream me please"
    assert len(pieces) >= 3
    assert final.content[0].type == "text"
    assert final.content[0].text == "echo: stream me please"


def test_anthropic_errors_are_in_anthropics_shape(gateway: GatewayProcess) -> None:
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    body = caught.value.body
    assert isinstance(body, dict)
    message = body["error"]["message"]
    assert body == {"type": "error", "error": {"type": "not_found_error", "message": message}}
    assert "echo" in message
    assert caught.value.response.headers["x-request-id"]


def test_unknown_model_is_404_naming_the_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
    assert "echo" in caught.value.message
    assert "minilm" in caught.value.message


def test_known_model_without_ready_replica_is_503_with_retry_after(gateway: GatewayProcess) -> None:
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json={"model": "down", "messages": []})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "model_not_ready"


def test_unreachable_upstream_is_502(gateway: GatewayProcess) -> None:
    response = httpx.post(f"{gateway.base_url}/v1/embeddings", json={"model": "broken", "input": "x"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"messages": []}', "missing_model"),
        (b'{"model": ["a"]}', "invalid_model"),
    ],
)
def test_bad_requests_are_400(gateway: GatewayProcess, body: bytes, code: str) -> None:
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.text


def test_oversized_body_is_413(gateway: GatewayProcess) -> None:
    big = json.dumps({"model": "echo", "prompt": "x" * (MAX_BODY + 1)})
    response = httpx.post(f"{gateway.base_url}/v1/completions", content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_route_and_method_are_enveloped(gateway: GatewayProcess) -> None:
    missing = httpx.get(f"{gateway.base_url}/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{gateway.base_url}/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"


def test_request_id_is_propagated_or_created(gateway: GatewayProcess) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
    given = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    created = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body)
    assert len(created.headers["x-request-id"]) >= 16


def test_health_readiness_and_metrics(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    assert httpx.get(f"{gateway.base_url}/healthz").status_code == 200
    assert httpx.get(f"{gateway.base_url}/readyz").json()["status"] == "ready"
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "count me"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert 'sage_gateway_requests_total{model="echo",route="chat",status="200"}' in metrics
    assert 'sage_gateway_requests_total{model="unknown",route="chat",status="404"}' in metrics
    assert "sage_gateway_request_duration_seconds_bucket" in metrics
    assert "sage_gateway_time_to_first_token_seconds_bucket" in metrics
    assert "sage_gateway_inflight_requests" in metrics
    assert 'sage_gateway_upstream_errors_total{endpoint="http://127.0.0.1:' in metrics


async def test_stream_chunks_are_relayed_before_the_upstream_finishes(
    gateway: GatewayProcess, gated: GatedUpstream
) -> None:
    """The second chunk only exists once the test has seen the first through the gateway, so a
    buffering proxy would never deliver the first one."""
    body = {"model": "gated", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{gateway.base_url}/v1/chat/completions", json=body) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = b""
        lines = response.aiter_lines()
        async for line in lines:
            seen += line.encode()
            if b"first" in seen:
                break
        assert b"second" not in seen
        gated.release.set()
        rest = "".join([line async for line in lines])
    assert rest.index("second") < rest.index("[DONE]")


async def test_client_disconnect_cancels_the_upstream_request(gateway: GatewayProcess, gated: GatedUpstream) -> None:
    body = {"model": "gated", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(timeout=30) as http:
        async with http.stream("POST", f"{gateway.base_url}/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if "first" in line:
                    break
        # Leaving the block closed the connection mid-stream; the gateway must drop the upstream.
        await gated.disconnected.wait()
        metrics = (await http.get(f"{gateway.base_url}/metrics")).text
    assert f'sage_gateway_inflight_requests{{endpoint="{gated.base_url}"}} 0.0' in metrics


async def test_hop_by_hop_headers_are_dropped(gateway: GatewayProcess, gated: GatedUpstream) -> None:
    headers = {"connection": "keep-alive, x-private-hop", "x-private-hop": "1", "x-custom": "kept", "te": "trailers"}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{gateway.base_url}/v1/chat/completions",
            json={"model": "gated", "messages": [{"role": "user", "content": "x"}]},
            headers=headers,
        )
    assert response.status_code == 200
    seen = {name.lower(): value for name, value in gated.seen_headers[-1].items()}
    assert seen["x-custom"] == "kept"
    assert "x-private-hop" not in seen
    assert "te" not in seen
    assert seen["x-request-id"] == response.headers["x-request-id"]


async def test_a_plain_text_upstream_failure_becomes_an_envelope(gateway: GatewayProcess, gated: GatedUpstream) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{gateway.base_url}/v1/completions", json={"model": "gated", "prompt": "x"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "boom: out of memory" in error["message"]


def test_bad_settings_stop_the_gateway_with_one_clear_line() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": source_pythonpath(),
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": '[{"name": "x", "urls": ["http://h:1"], "policy": "random"}]',
    }
    result = subprocess.run(
        [sys.executable, "-m", "sage_gateway", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "policy" in result.stderr
    assert "Traceback" not in result.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "sage_gateway", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "SAGE_GATEWAY_DISCOVERY" in helped.stdout


async def test_client_disconnect_while_waiting_cancels_the_upstream_request(
    gateway: GatewayProcess, gated: GatedUpstream
) -> None:
    """A non-streaming request whose answer takes long (a generation): the client hangs up
    before any byte came back, and the gateway hangs up on the replica too."""
    body = {"model": "gated", "hold": True, "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(timeout=30) as http:
        waiting = asyncio.ensure_future(http.post(f"{gateway.base_url}/v1/chat/completions", json=body))
        await gated.received.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await gated.disconnected.wait()
        metrics = (await http.get(f"{gateway.base_url}/metrics")).text
    assert f'sage_gateway_inflight_requests{{endpoint="{gated.base_url}"}} 0.0' in metrics
    assert 'sage_gateway_requests_total{model="gated",route="chat",status="499"}' in metrics


async def test_a_replica_slower_than_the_read_timeout_is_a_504_not_retried(gated: GatedUpstream) -> None:
    """SAGE_GATEWAY_READ_TIMEOUT bounds the wait for a replica's next bytes (here: a replica that
    holds its answer until the test releases it, which it never does)."""
    engines = json.dumps([{"name": "gated", "urls": [gated.base_url]}])
    env = {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": engines,
        "SAGE_GATEWAY_READ_TIMEOUT": "0.2",
    }
    impatient = await asyncio.to_thread(GatewayProcess(env=env).start)
    try:
        body = {"model": "gated", "hold": True, "messages": [{"role": "user", "content": "x"}]}
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(f"{impatient.base_url}/v1/chat/completions", json=body)
        assert response.status_code == 504
        error = response.json()["error"]
        assert error["code"] == "upstream_timeout"
        assert "did not answer in time" in error["message"]
        await gated.disconnected.wait()  # the gateway hung up on the slow replica
        assert len(gated.seen_headers) == 1  # it may have started the work: not sent again
    finally:
        await asyncio.to_thread(impatient.stop)
