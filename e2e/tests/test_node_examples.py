"""Every manifest under examples/ that can run without a GPU, applied as written on the real node
(in a namespace enforcing the restricted Pod Security Standard), reaches the phase its comment
promises and answers the official `openai` client through the gateway, reached with
`kubectl port-forward svc/sage-gateway` as the README says. The GPU example is applied too and
reported honestly. (The MiniLM example is the README's: test_node_readme.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from sage_harness import tiny_lm
from sage_harness.cluster_checks import condition, port_forward, wait_phase, wait_status
from sage_harness.kubectl import Kubectl
from sage_harness.node_images import record
from sage_harness.node_volumes import copy_model, provide_claim
from sage_harness.repo import REPO_ROOT
from sage_harness.waiting import wait_until
from sage_testing.node_fixtures import SageRelease

EXAMPLES = REPO_ROOT / "examples"


def apply_example(kubectl: Kubectl, namespace: str, example: str) -> float:
    """`kubectl apply -f examples/<example>` into `namespace`; the monotonic time it was applied."""
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / example))
    return time.monotonic()


@pytest.fixture
def gateway_client(sage_release: SageRelease, node_kubectl: Kubectl) -> Iterator[openai.OpenAI]:
    with port_forward(node_kubectl, sage_release.namespace, "svc/sage-gateway", 80) as base:
        yield openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=120)


def wait_routed(client: openai.OpenAI, model: str) -> None:
    """Until the gateway lists `model` (it follows the engine's ready endpoints within a second)."""
    wait_until(lambda: model in {m.id for m in client.models.list()}, f"the gateway to list {model}", 30, 0.2)


@pytest.fixture
def volumes(node_kubectl: Kubectl) -> Iterator[list[str]]:
    """PersistentVolumes a test created (cluster-scoped: deleted here, not with the namespace)."""
    created: list[str] = []
    yield created
    for volume in created:
        node_kubectl.run("delete", "pv", volume, "--wait=false", check=False)


def test_the_namespaces_enforce_the_restricted_profile(node_kubectl: Kubectl, node_namespace: str) -> None:
    """So every engine and training pod these tests run was admitted under `restricted`."""
    root_pod = node_kubectl.run(
        "run", "root", "-n", node_namespace, "--image=sage/engine:x", "--overrides",
        '{"spec": {"securityContext": {"runAsUser": 0}}}', check=False,
    )  # fmt: skip
    assert root_pod.returncode != 0
    assert "violates PodSecurity" in root_pod.stderr
    assert '"restricted:latest"' in root_pod.stderr


def test_the_deterministic_example_answers_chat_and_embeddings(
    sage_release: SageRelease, node_kubectl: Kubectl, node_namespace: str, gateway_client: openai.OpenAI
) -> None:
    applied = apply_example(node_kubectl, node_namespace, "deterministic-test.yaml")
    status = wait_phase(node_kubectl, "llmengine/echo", node_namespace, "Ready")
    assert status["ready"] == "1/1"
    wait_routed(gateway_client, "echo")
    chat = gateway_client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello"}])
    record("example-routed", time.monotonic() - applied, example="deterministic-test.yaml")
    assert chat.choices[0].message.content == "echo: hello"
    embedding = gateway_client.embeddings.create(model="echo", input="hi").data[0].embedding
    assert len(embedding) > 0

    # The pod runs the engine image built here, on the node, under the operator's security context.
    (pod,) = node_kubectl.json("get", "pods", "-n", node_namespace, "-l", "sage.ai/engine=echo")["items"]
    assert pod["spec"]["containers"][0]["image"] == sage_release.images["engine"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_the_transformers_cpu_example_serves_a_model_from_its_claim(
    node_kubectl: Kubectl, node_namespace: str, gateway_client: openai.OpenAI, volumes: list[str], tmp_path: Path
) -> None:
    """The claim `models` the example names, holding a model folder at chat/ (the test's tiny LM)."""
    claim_folder = tmp_path / "models"
    copy_model(tiny_lm.ensure(), claim_folder / "chat")
    volumes.append(provide_claim(node_kubectl, node_namespace, "models", claim_folder))
    applied = apply_example(node_kubectl, node_namespace, "llm-transformers-cpu.yaml")
    wait_phase(node_kubectl, "llmengine/chat-cpu", node_namespace, "Ready", timeout=300)
    wait_routed(gateway_client, "chat-cpu")
    chat = gateway_client.chat.completions.create(
        model="chat-cpu", messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
    )
    record("example-routed", time.monotonic() - applied, example="llm-transformers-cpu.yaml")
    assert chat.model == "chat-cpu"
    assert chat.usage is not None
    assert 0 < chat.usage.completion_tokens <= 8
    assert chat.choices[0].finish_reason in {"stop", "length"}
    streamed = gateway_client.chat.completions.create(
        model="chat-cpu", messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices]
    assert "".join(pieces) == chat.choices[0].message.content  # greedy: the same text, streamed


def test_the_gpu_example_says_it_cannot_be_scheduled_for_want_of_a_gpu(
    sage_release: SageRelease, node_kubectl: Kubectl, node_namespace: str
) -> None:
    """The release's operator renders the engine; the node's scheduler refuses it."""
    apply_example(node_kubectl, node_namespace, "llm-vllm-gpu.yaml")
    status = wait_status(
        node_kubectl,
        "llmengine/qwen",
        node_namespace,
        lambda s: condition(s, "Ready").get("reason") == "Unschedulable",
        "Ready condition reason Unschedulable",
    )
    assert status["phase"] == "Failed"
    assert "needs nvidia.com/gpu: 1" in status["message"]
    assert "0/1 nodes are available" in status["message"]  # the scheduler's own words
    assert "nvidia.com/gpu" in condition(status, "Ready")["message"]
