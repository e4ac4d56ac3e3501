"""all-MiniLM-L6-v2 served by the sentence-transformers backend in a real engine process,
compared with the same model run in-process."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import torch
from sentence_transformers import SentenceTransformer

from sage_harness.engines import EngineProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply on Monday.",
    "Kubernetes restarts containers that fail their liveness probe.",
    "hi",
]


@pytest.fixture(scope="module")
def minilm_engine(minilm_path: Path) -> Iterator[EngineProcess]:
    with EngineProcess("sentence-transformers", str(minilm_path), served_model_name="minilm", aliases=("mini",)) as e:
        yield e


@pytest.fixture(scope="module")
def reference(minilm_path: Path) -> SentenceTransformer:
    torch.set_num_threads(1)
    return SentenceTransformer(str(minilm_path), device="cpu")


def _embed(engine: EngineProcess, payload: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{engine.base_url}/v1/embeddings", json=payload, timeout=60)


def test_vectors_equal_in_process_encode(minilm_engine: EngineProcess, reference: SentenceTransformer) -> None:
    body = _embed(minilm_engine, {"model": "minilm", "input": SENTENCES}).json()
    served = np.array([item["embedding"] for item in body["data"]])
    expected = reference.encode(SENTENCES)
    assert served.shape == (len(SENTENCES), 384)
    assert np.abs(served - expected).max() < 1e-5
    tokens = sum(len(ids) for ids in reference.tokenizer(SENTENCES)["input_ids"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_related_sentences_are_closer(minilm_engine: EngineProcess) -> None:
    body = _embed(minilm_engine, {"input": SENTENCES[:3]}).json()
    guitar, music, stocks = (np.array(item["embedding"]) for item in body["data"])
    assert float(guitar @ music) > float(guitar @ stocks) + 0.2


def test_base64_decodes_to_the_same_floats(minilm_engine: EngineProcess) -> None:
    floats = _embed(minilm_engine, {"input": SENTENCES[3]}).json()["data"][0]["embedding"]
    packed = _embed(minilm_engine, {"input": SENTENCES[3], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.abs(decoded - np.array(floats, dtype=np.float32)).max() < 1e-7


def test_token_ids_equal_text(minilm_engine: EngineProcess, reference: SentenceTransformer) -> None:
    ids = list(reference.tokenizer(SENTENCES[0])["input_ids"])
    by_ids = _embed(minilm_engine, {"input": [ids]}).json()
    by_text = _embed(minilm_engine, {"input": SENTENCES[0]}).json()
    assert np.allclose(by_ids["data"][0]["embedding"], by_text["data"][0]["embedding"], atol=1e-6)
    assert by_ids["usage"]["prompt_tokens"] == len(ids)


async def test_concurrent_callers_get_their_own_vectors(
    minilm_engine: EngineProcess, reference: SentenceTransformer
) -> None:
    requests = [[f"request {i} sentence {j}: {SENTENCES[(i + j) % 4]}" for j in range(1 + i % 3)] for i in range(24)]
    async with httpx.AsyncClient(base_url=minilm_engine.base_url, timeout=120) as client:
        responses = await asyncio.gather(*(client.post("/v1/embeddings", json={"input": r}) for r in requests))
    for texts, response in zip(requests, responses, strict=True):
        data = response.json()["data"]
        assert [item["index"] for item in data] == list(range(len(texts)))
        served = np.array([item["embedding"] for item in data])
        assert np.abs(served - reference.encode(texts)).max() < 1e-5


def test_openai_client(minilm_engine: EngineProcess, reference: SentenceTransformer) -> None:
    client = openai.OpenAI(base_url=f"{minilm_engine.base_url}/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(model="mini", input=SENTENCES[:2])  # base64 on the wire by default
    served = np.array([item.embedding for item in result.data])
    assert np.abs(served - reference.encode(SENTENCES[:2])).max() < 1e-5
    assert [m.id for m in client.models.list().data] == ["minilm", "mini"]


@pytest.mark.parametrize(
    ("payload", "status", "param", "says"),
    [
        ({"input": "word " * 400}, 400, "input", "at most 256 tokens"),
        ({"input": "hello", "dimensions": 128}, 400, "dimensions", "384 dimensions"),
        ({"input": [[101, 10**7]]}, 400, "input", "vocabulary"),
        ({"input": "hello", "model": "minilm-v9"}, 404, "model", "minilm"),
    ],
)
def test_errors(minilm_engine: EngineProcess, payload: dict[str, object], status: int, param: str, says: str) -> None:
    response = _embed(minilm_engine, payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error")
    assert says in error["message"]
    assert _embed(minilm_engine, {"input": "still serving"}).status_code == 200


def test_full_dimensions_are_accepted(minilm_engine: EngineProcess) -> None:
    assert _embed(minilm_engine, {"input": "x", "dimensions": 384}).status_code == 200


def test_no_chat_on_an_embedding_engine(minilm_engine: EngineProcess) -> None:
    response = httpx.post(f"{minilm_engine.base_url}/v1/chat/completions", json={"messages": []}, timeout=30)
    assert response.status_code == 404
    assert "embedding model" in response.json()["error"]["message"]


@pytest.mark.parametrize("model", ["/nonexistent/model-folder", "no-such-org/no-such-model"])
def test_a_model_that_cannot_load_exits_non_zero(model: str) -> None:
    engine = EngineProcess("sentence-transformers", model)
    engine.launch()
    try:
        assert engine.wait_exit(120) != 0
        assert model in engine.termination_message()
        assert "failed to load model" in engine.log()
    finally:
        engine.stop()
