"""Hand-off to serving: the adapter the runner writes loads into a real engine server through
vLLM's runtime adapter API, and through the gateway the greedy answer with the adapter contains the
codeword while the base model's does not."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from sage_api.finetune import DatasetFormat
from sage_finetune.exits import EXIT_COMPLETED
from sage_finetune.run import train
from sage_finetune.settings import FinetuneSettings
from sage_harness.gateway import GatewayProcess
from sage_testing.engine_fixtures import EngineFactory

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_the_engine_serves_the_trained_adapter_by_name(
    *,
    trainable_tiny_lm_path: Path,
    codeword_chat_dataset: Path,
    tmp_path: Path,
    engine_factory: EngineFactory,
    codeword: str,
    codeword_question: str,
) -> None:
    output = tmp_path / "codeword-bot"
    settings = FinetuneSettings(
        base_model=str(trainable_tiny_lm_path),
        dataset=codeword_chat_dataset,
        output=output,
        format=DatasetFormat.CHAT,
        rank=8,
        alpha=16,
        learning_rate=0.02,
        batch_size=4,
        max_seq_length=64,
        max_steps=40,
    )
    assert train(settings, threading.Event()).code == EXIT_COMPLETED

    engine = engine_factory("transformers", str(trainable_tiny_lm_path), served_model_name="tiny")
    request = {"messages": [{"role": "user", "content": codeword_question}], "max_tokens": 32, "temperature": 0}
    with httpx.Client(base_url=engine.base_url, timeout=120) as http:
        loaded = http.post("/v1/load_lora_adapter", json={"lora_name": "codeword-bot", "lora_path": str(output)})
        assert loaded.status_code == 200, loaded.text
    engines = json.dumps([{"name": "tiny", "urls": [engine.base_url], "adapters": ["codeword-bot"]}])
    env = {"SAGE_GATEWAY_DISCOVERY": "static", "SAGE_GATEWAY_STATIC_ENGINES": engines}
    with GatewayProcess(env=env) as gateway, httpx.Client(base_url=gateway.base_url, timeout=120) as http:
        assert "codeword-bot" in {m["id"] for m in http.get("/v1/models").json()["data"]}
        base = http.post("/v1/chat/completions", json=request | {"model": "tiny"}).json()
        tuned = http.post("/v1/chat/completions", json=request | {"model": "codeword-bot"}).json()

    assert codeword not in base["choices"][0]["message"]["content"]
    assert codeword in tuned["choices"][0]["message"]["content"], tuned
    assert tuned["model"] == "codeword-bot"
