"""The deterministic test backend in a real engine process: every route, the official openai
client, adapters, and the error envelope (status, type, param) with the server still serving."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from sage_harness.engines import EngineProcess
from sage_wire.sse import data_payloads

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def echo() -> Iterator[EngineProcess]:
    engine = EngineProcess(
        "deterministic",
        "echo",
        aliases=("echo-a", "echo-b"),
        extra_args=("--max-inputs", "8", "--max-body-bytes", "4096"),
    )
    with engine:
        yield engine


@pytest.fixture
def http(echo: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=echo.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def client(echo: EngineProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{echo.base_url}/v1", api_key="unused", max_retries=0)


def test_health_and_models(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    ids = [model["id"] for model in http.get("/v1/models").json()["data"]]
    assert ids == ["echo", "echo-a", "echo-b"]


def test_openai_client_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="echo-a", input=["one", "two", "one"])
    vectors = [item.embedding for item in result.data]
    assert len(vectors[0]) == 64
    assert vectors[0] == vectors[2] != vectors[1]
    assert result.usage.prompt_tokens == 3
    shorter = client.embeddings.create(model="echo", input="one", dimensions=8)
    assert len(shorter.data[0].embedding) == 8


def test_base64_equals_float(http: httpx.Client) -> None:
    floats = http.post("/v1/embeddings", json={"input": "x y", "encoding_format": "float"}).json()
    packed = http.post("/v1/embeddings", json={"input": "x y", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, floats["data"][0]["embedding"], atol=1e-7)


def test_token_id_inputs(http: httpx.Client) -> None:
    body = http.post("/v1/embeddings", json={"input": [[1, 2, 3], [4]]}).json()
    assert [len(item["embedding"]) for item in body["data"]] == [64, 64]
    assert body["usage"]["prompt_tokens"] == 4


def test_openai_client_chat_and_completions(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello there world"}])
    assert chat.choices[0].message.content == "echo: hello there world"
    assert chat.choices[0].finish_reason == "stop"
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 4
    cut = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a b c d"}], max_tokens=2)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("echo: a", "length")
    stopped = client.completions.create(model="echo-b", prompt="alpha beta gamma", stop=[" gamma"])
    assert (stopped.choices[0].text, stopped.choices[0].finish_reason) == ("alpha beta", "stop")


def test_openai_client_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_stream_ends_with_done(http: httpx.Client) -> None:
    response = http.post("/v1/completions", json={"prompt": "x y", "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(response.content)
    assert events[-1] == "[DONE]"
    assert all(e.startswith("{") for e in events[:-1])


def test_adapters_load_list_call_unload(http: httpx.Client, client: openai.OpenAI) -> None:
    loaded = http.post("/v1/load_lora_adapter", json={"lora_name": "bot", "lora_path": "/adapters/bot"})
    assert loaded.status_code == 200, loaded.text
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert models["bot"]["parent"] == "echo"
    reply = client.chat.completions.create(model="bot", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "[bot] echo: hi"
    assert reply.model == "bot"
    again = http.post("/v1/load_lora_adapter", json={"lora_name": "bot", "lora_path": "/adapters/bot"})
    assert (again.status_code, again.json()["error"]["param"]) == (400, "lora_name")
    assert http.post("/v1/unload_lora_adapter", json={"lora_name": "bot"}).status_code == 200
    gone = http.post("/v1/chat/completions", json={"model": "bot", "messages": [{"role": "user", "content": "hi"}]})
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "model_not_found")
    missing = http.post("/v1/unload_lora_adapter", json={"lora_name": "bot"})
    assert missing.status_code == 400


CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        (EMBED, {"input": ""}, 400, "input"),
        (EMBED, {"input": []}, 400, "input"),
        (EMBED, {"input": [1, "a"]}, 400, "input"),
        (EMBED, {"input": {"text": "a"}}, 400, "input"),
        (EMBED, {"input": ["a"] * 9}, 400, "input"),
        (EMBED, {"input": "a", "dimensions": 65}, 400, "dimensions"),
        (EMBED, {"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
        (EMBED, {"input": "a", "model": "nope"}, 404, "model"),
        (EMBED, {"input": "a " * 5000}, 413, None),
        (CHAT, {"messages": []}, 400, "messages"),
        (CHAT, {"messages": "hi"}, 400, "messages"),
        (CHAT, {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
        (CHAT, {"messages": [{"role": "user", "content": "x"}], "n": 3}, 400, "n"),
        (CHAT, {"messages": [{"role": "user", "content": "x"}], "temperature": 7}, 400, "temperature"),
        (CHAT, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
        (CHAT, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6}, 400, "max_tokens"),
        (CHAT, {"messages": [{"role": "user", "content": "x"}], "model": "gpt-4"}, 404, "model"),
        ("/v1/completions", {"prompt": ["a", "b"]}, 400, "prompt"),
        ("/v1/load_lora_adapter", {"lora_name": "x"}, 400, "lora_path"),
        ("/v1/load_lora_adapter", {"lora_name": "echo", "lora_path": "/x"}, 400, "lora_name"),
    ],
)
def test_errors_use_the_envelope(http: httpx.Client, path: str, body: object, status: int, param: str | None) -> None:
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    if status == 404:
        assert error["code"] == "model_not_found"
    assert http.get("/health").status_code == 200
    assert http.post(EMBED, json={"input": "still serving"}).status_code == 200


def test_malformed_json_and_unknown_route(http: httpx.Client) -> None:
    response = http.post(EMBED, content=b'{"input": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    unknown = http.get("/v1/nothing")
    assert unknown.status_code == 404
    assert "error" in unknown.json()
    wrong_method = http.get(EMBED)
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()


def test_openai_client_sees_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="nope", input="a")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="echo", input=[])


def test_environment_configures_the_engine() -> None:
    engine = EngineProcess(
        "deterministic",
        "ignored",
        env={
            "SAGE_ENGINE_ALIASES": "x1, x2",
            "SAGE_ENGINE_SERVED_MODEL_NAME": "from-env",
            "SAGE_ENGINE_DIMENSIONS": "16",
            "SAGE_ENGINE_DEFAULT_MAX_TOKENS": "2",
        },
    )
    with engine:
        models = httpx.get(f"{engine.base_url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["from-env", "x1", "x2"]
        vector = httpx.post(f"{engine.base_url}/v1/embeddings", json={"input": "a"}).json()["data"][0]["embedding"]
        assert len(vector) == 16
        chat = {"messages": [{"role": "user", "content": "one two three four"}]}
        capped = httpx.post(f"{engine.base_url}/v1/chat/completions", json=chat).json()
        assert (capped["usage"]["completion_tokens"], capped["choices"][0]["finish_reason"]) == (2, "length")
        asked = httpx.post(f"{engine.base_url}/v1/chat/completions", json={**chat, "max_tokens": 4}).json()
        assert asked["usage"]["completion_tokens"] == 4


def test_bad_option_exits_with_usage() -> None:
    engine = EngineProcess("deterministic", "x", extra_args=("--max-inputs", "zero"))
    engine.launch()
    try:
        assert engine.wait_exit(60) == 2
        assert "--max-inputs" in engine.log()
    finally:
        engine.stop()


def sse_payloads(body: bytes) -> list[str]:
    return [payload.decode() for payload in data_payloads(body)]
