"""The tiny causal LM served by the transformers backend in a real engine process: chat and
completions against in-process transformers, streaming, stops, seeds, usage, LoRA adapters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from sage_harness.engines import EngineProcess
from sage_harness.waiting import wait_until
from sage_wire.sse import data_payloads

pytestmark = [pytest.mark.engine, pytest.mark.slow]

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, how are you today?"}]


@pytest.fixture(scope="module")
def tiny_engine(tiny_lm_path: Path) -> Iterator[EngineProcess]:
    with EngineProcess("transformers", str(tiny_lm_path), served_model_name="tiny") as engine:
        yield engine


@pytest.fixture(scope="module")
def tokenizer(tiny_lm_path: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_lm_path)


@pytest.fixture
def http(tiny_engine: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiny_engine.base_url, timeout=120) as client:
        yield client


def _greedy_reference(path: Path, tokenizer: Any, prompt_ids: list[int], max_new_tokens: int) -> str:
    torch.set_num_threads(1)
    model: Any = AutoModelForCausalLM.from_pretrained(path)
    output = model.generate(
        torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False, attention_mask=None
    )
    return str(tokenizer.decode(output[0, len(prompt_ids) :], skip_special_tokens=True))


def _chat_prompt_ids(tokenizer: Any) -> list[int]:
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_chat_equals_in_process_greedy_generate(http: httpx.Client, tokenizer: Any, tiny_lm_path: Path) -> None:
    body = http.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 12, "temperature": 0}).json()
    prompt_ids = _chat_prompt_ids(tokenizer)
    assert body["choices"][0]["message"]["content"] == _greedy_reference(tiny_lm_path, tokenizer, prompt_ids, 12)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {
        "prompt_tokens": len(prompt_ids),
        "completion_tokens": 12,
        "total_tokens": len(prompt_ids) + 12,
    }
    assert body["object"] == "chat.completion"
    assert body["model"] == "tiny"


def test_completions_equal_in_process_greedy_generate(http: httpx.Client, tokenizer: Any, tiny_lm_path: Path) -> None:
    prompt = "The quick brown fox"
    body = http.post("/v1/completions", json={"prompt": prompt, "max_tokens": 10, "temperature": 0}).json()
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    assert body["choices"][0]["text"] == _greedy_reference(tiny_lm_path, tokenizer, prompt_ids, 10)
    assert body["usage"]["prompt_tokens"] == len(prompt_ids)
    by_ids = http.post("/v1/completions", json={"prompt": prompt_ids, "max_tokens": 10, "temperature": 0}).json()
    assert by_ids["choices"][0]["text"] == body["choices"][0]["text"]


def test_streaming_chunks(http: httpx.Client) -> None:
    request = {"messages": MESSAGES, "max_tokens": 10, "temperature": 0}
    whole = http.post("/v1/chat/completions", json=request).json()["choices"][0]["message"]["content"]
    response = http.post(
        "/v1/chat/completions", json={**request, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content.endswith(b"data: [DONE]\n\n")
    events = sse_payloads(response.content)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    with_choices = [chunk for chunk in chunks if chunk["choices"]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in with_choices) == whole
    assert with_choices[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in with_choices[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 10


def test_stop_sequences(http: httpx.Client) -> None:
    request = {"prompt": "Kubernetes schedules", "max_tokens": 16, "temperature": 0}
    text = http.post("/v1/completions", json=request).json()["choices"][0]["text"]
    stop = text[5:8]
    expected = text[: text.find(stop)]
    body = http.post("/v1/completions", json={**request, "stop": [stop, "never-produced"]}).json()
    assert (body["choices"][0]["text"], body["choices"][0]["finish_reason"]) == (expected, "stop")
    streamed = http.post("/v1/completions", json={**request, "stop": stop, "stream": True})
    chunks = [json.loads(e) for e in sse_payloads(streamed.content)[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_seed_makes_sampling_reproducible(http: httpx.Client) -> None:
    request = {"messages": MESSAGES, "max_tokens": 12, "temperature": 1.0, "top_p": 0.9, "seed": 1234}
    first = http.post("/v1/chat/completions", json=request).json()["choices"][0]["message"]["content"]
    second = http.post("/v1/chat/completions", json=request).json()["choices"][0]["message"]["content"]
    assert first == second


def test_openai_client_chat_completions_and_streaming(tiny_engine: EngineProcess) -> None:
    client = openai.OpenAI(base_url=f"{tiny_engine.base_url}/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5, temperature=0)  # type: ignore[arg-type]
    assert chat.choices[0].finish_reason == "length"
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 5
    completion = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0)
    assert completion.choices[0].text
    stream: Any = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=5,
        temperature=0,
        stream=True,
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == chat.choices[0].message.content


@pytest.mark.parametrize(
    ("path", "payload", "param", "says"),
    [
        ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 300}, "max_tokens", "context length is 256"),
        ("/v1/completions", {"prompt": "word " * 300}, "prompt", "context length is 256"),
        ("/v1/completions", {"prompt": [1, 2, 99999]}, "prompt", "token ids"),
        ("/v1/chat/completions", {"messages": MESSAGES, "top_p": 0}, "top_p", "greater than 0"),
        ("/v1/chat/completions", {"messages": MESSAGES, "stop": ["a"] * 17}, "stop", "at most 16"),
        ("/v1/embeddings", {"input": "x"}, None, "text-generation model"),
    ],
)
def test_errors(http: httpx.Client, path: str, payload: dict[str, Any], param: str | None, says: str) -> None:
    response = http.post(path, json=payload)
    assert response.status_code in {400, 404}, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert says in error["message"]
    assert http.post("/v1/completions", json={"prompt": "ok", "max_tokens": 1}).status_code == 200


@pytest.fixture(scope="module")
def adapter_path(tiny_lm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter made with peft; non-zero initial weights so it changes the output."""
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_path)
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    folder = tmp_path_factory.mktemp("adapter") / "support-bot"
    model.save_pretrained(str(folder))
    return folder


def test_adapter_load_list_call_unload(http: httpx.Client, adapter_path: Path) -> None:
    request = {"messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    base_text = http.post("/v1/chat/completions", json=request).json()["choices"][0]["message"]["content"]

    loaded = http.post("/v1/load_lora_adapter", json={"lora_name": "support-bot", "lora_path": str(adapter_path)})
    assert loaded.status_code == 200, loaded.text
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert models["support-bot"]["parent"] == "tiny"

    tuned = http.post("/v1/chat/completions", json={**request, "model": "support-bot"}).json()
    assert tuned["model"] == "support-bot"
    assert tuned["choices"][0]["message"]["content"] != base_text
    # The base model is unchanged while the adapter is loaded.
    again = http.post("/v1/chat/completions", json={**request, "model": "tiny"}).json()
    assert again["choices"][0]["message"]["content"] == base_text

    duplicate = http.post("/v1/load_lora_adapter", json={"lora_name": "support-bot", "lora_path": str(adapter_path)})
    assert (duplicate.status_code, duplicate.json()["error"]["param"]) == (400, "lora_name")

    assert http.post("/v1/unload_lora_adapter", json={"lora_name": "support-bot"}).status_code == 200
    assert "support-bot" not in [m["id"] for m in http.get("/v1/models").json()["data"]]
    gone = http.post("/v1/chat/completions", json={**request, "model": "support-bot"})
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "model_not_found")
    after = http.post("/v1/chat/completions", json=request).json()
    assert after["choices"][0]["message"]["content"] == base_text


def test_bad_adapter_path(http: httpx.Client, tmp_path: Path) -> None:
    response = http.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": str(tmp_path / "missing")})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "lora_path"
    assert "x" not in [m["id"] for m in http.get("/v1/models").json()["data"]]


def test_openai_client_drives_the_adapter_api(tiny_engine: EngineProcess, adapter_path: Path) -> None:
    """vLLM's adapter routes are not in the client's typed API; its generic `post` reaches them."""
    client = openai.OpenAI(base_url=f"{tiny_engine.base_url}/v1", api_key="unused", max_retries=0)
    body = {"lora_name": "client-bot", "lora_path": str(adapter_path)}
    loaded = client.post("/load_lora_adapter", body=body, cast_to=httpx.Response)
    assert loaded.status_code == 200
    assert "client-bot" in [m.id for m in client.models.list().data]
    reply = client.completions.create(model="client-bot", prompt="Hello", max_tokens=3, temperature=0)
    assert reply.model == "client-bot"
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/load_lora_adapter", body=body, cast_to=httpx.Response)
    assert caught.value.code is None
    assert "already been loaded" in caught.value.message
    unloaded = client.post("/unload_lora_adapter", body={"lora_name": "client-bot"}, cast_to=httpx.Response)
    assert unloaded.status_code == 200
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="client-bot", prompt="Hello", max_tokens=3)


def test_a_client_that_goes_away_stops_its_generation(tiny_engine: EngineProcess, http: httpx.Client) -> None:
    request = {"prompt": "Hello", "max_tokens": 240, "temperature": 0, "stream": True}
    with (
        httpx.Client(base_url=tiny_engine.base_url, timeout=60) as client,
        client.stream("POST", "/v1/completions", json=request) as response,
    ):
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
    # The engine notices at the next token and says how far it got.
    wait_until(lambda: "generation cancelled after" in tiny_engine.log(), "the engine to log the cancellation")
    said = next(line for line in tiny_engine.log().splitlines() if "generation cancelled after" in line)
    assert int(said.split("after ")[1].split()[0]) < 240
    assert http.post("/v1/completions", json={"prompt": "next", "max_tokens": 2}).status_code == 200


def sse_payloads(body: bytes) -> list[str]:
    return [payload.decode() for payload in data_payloads(body)]


def test_listed_adapters_are_served_from_the_first_ready_moment(
    tiny_lm_path: Path, adapter_path: Path, tmp_path: Path
) -> None:
    """SAGE_ENGINE_ADAPTERS_FILE (what the operator mounts): the engine turns ready only once it
    serves them, so a restarted pod never answers 404 for its adapter while the operator catches up."""
    listed = tmp_path / "adapters.json"
    listed.write_text(json.dumps({"support-bot": str(adapter_path)}))
    engine = EngineProcess(
        "transformers", str(tiny_lm_path), served_model_name="tiny", env={"SAGE_ENGINE_ADAPTERS_FILE": str(listed)}
    )
    with engine:  # started: /health answered 200
        served = {model["id"] for model in httpx.get(f"{engine.base_url}/v1/models").json()["data"]}
        assert served == {"tiny", "support-bot"}
        request = {"model": "support-bot", "messages": MESSAGES, "max_tokens": 4, "temperature": 0}
        assert httpx.post(f"{engine.base_url}/v1/chat/completions", json=request, timeout=60).status_code == 200


def test_a_listed_adapter_that_cannot_load_keeps_the_engine_from_ever_turning_ready(
    tiny_lm_path: Path, tmp_path: Path
) -> None:
    listed = tmp_path / "adapters.json"
    listed.write_text(json.dumps({"gone": str(tmp_path / "no-such-adapter")}))
    engine = EngineProcess(
        "transformers", str(tiny_lm_path), served_model_name="tiny", env={"SAGE_ENGINE_ADAPTERS_FILE": str(listed)}
    )
    engine.launch()
    try:
        assert engine.wait_exit(120) != 0
        assert "failed to load LoRA adapter 'gone'" in engine.termination_message()
    finally:
        engine.stop()
