"""Local mode end to end: `sage up` on manifests (real MiniLM embeddings, the tiny test causal LM),
then the official openai client through the gateway, then Ctrl-C and no process left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from sage_harness.net import free_port_run
from sage_harness.proc_tree import alive, descendants
from sage_harness.repo import REPO_ROOT, source_pythonpath
from sage_harness.waiting import WaitTimeout, wait_until

LOCAL_KEY = "sk-sage-local-mode-test-key"

MANIFESTS = """
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: minilm}}
spec:
  model: sentence-transformers/all-MiniLM-L6-v2
  engineKind: embedding
  aliases: [text-embedding-3-small]
---
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: tiny}}
spec:
  model: {tiny_lm}
  backend: transformers
---
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: broken}}
spec:
  model: ./no-such-model-folder
  backend: transformers
"""


@dataclass
class LocalSage:
    process: subprocess.Popen[str]
    url: str
    output: Path
    children: set[int]

    def read_output(self) -> str:
        return self.output.read_text()


@pytest.fixture(scope="module")
def local_sage(tiny_lm_path: Path, minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSage]:
    folder = tmp_path_factory.mktemp("local-mode")
    (folder / "engines.yaml").write_text(MANIFESTS.format(tiny_lm=tiny_lm_path))
    gateway_port, engine_base = free_port_run(1), free_port_run(3)
    output = folder / "sage-up.out"
    env = {
        **os.environ,
        "PYTHONPATH": source_pythonpath(),
        "HF_HUB_OFFLINE": "1",
        "SAGE_STATE_DIR": str(folder / "state"),
    }
    command = [sys.executable, "-m", "sage_cli", "up", "-f", str(folder), "--api-key", LOCAL_KEY,
               "--port", str(gateway_port), "--engine-base-port", str(engine_base),
               "--control-port", str(free_port_run(1))]  # fmt: skip
    with output.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)
    sage = LocalSage(process, f"http://127.0.0.1:{gateway_port}", output, set())
    try:
        wait_until(
            lambda: "SAGE is serving" in sage.read_output() or process.poll() is not None,
            "sage up to serve",
            timeout=300,
        )
        assert process.poll() is None, sage.read_output()
        sage.children = descendants(process.pid)
        yield sage
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        print(sage.read_output())


@pytest.fixture(scope="module")
def client(local_sage: LocalSage) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_sage.url}/v1", api_key=LOCAL_KEY, max_retries=0)


def test_startup_output_names_engines_url_and_example(local_sage: LocalSage) -> None:
    out = local_sage.read_output()
    assert "ready   minilm" in out
    assert "ready   tiny" in out
    assert "FAILED  broken" in out
    assert "does not exist" in out  # the failed engine's own reason
    assert f"SAGE is serving at {local_sage.url}/v1" in out
    assert f'curl -s {local_sage.url}/v1/embeddings -H "Authorization: Bearer $SAGE_API_KEY"' in out
    assert LOCAL_KEY not in out  # the key is never printed, nor logged


def test_the_api_key_is_required_when_given(local_sage: LocalSage) -> None:
    refused = openai.OpenAI(base_url=f"{local_sage.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        refused.models.list()
    assert httpx.get(f"{local_sage.url}/v1/models").status_code == 401
    logs = [path for path in (local_sage.output.parent / "state").rglob("*") if path.is_file()]
    assert logs
    assert not [path for path in logs if LOCAL_KEY in path.read_text(errors="replace")]


def test_models_lists_every_running_engine(client: openai.OpenAI) -> None:
    names = {model.id for model in client.models.list()}
    assert {"minilm", "text-embedding-3-small", "tiny"} <= names


def test_embeddings_through_the_gateway(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model="text-embedding-3-small", input=["local mode works", "another text"])
    assert [item.index for item in response.data] == [0, 1]
    assert len(response.data[0].embedding) == 384
    assert response.usage.prompt_tokens > 0


def test_chat_with_and_without_streaming(client: openai.OpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    assert whole.choices[0].finish_reason in {"stop", "length"}
    assert whole.usage is not None
    assert whole.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0, stream=True)
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == whole.choices[0].message.content


def test_unknown_and_failed_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        client.embeddings.create(model="no-such-model", input="x")
    assert unknown.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 503


def test_ctrl_c_stops_everything(local_sage: LocalSage) -> None:
    assert len(local_sage.children) >= 3, "sage up should run 2 engines and the gateway"
    local_sage.process.send_signal(signal.SIGINT)
    assert local_sage.process.wait(timeout=60) == 0

    def left() -> list[int]:
        return [pid for pid in local_sage.children if alive(pid)]

    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not left(), "every child to exit", timeout=20)
    assert not left(), "processes left behind after Ctrl-C"
    assert "stopped." in local_sage.read_output()
