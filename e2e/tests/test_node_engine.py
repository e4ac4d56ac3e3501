"""The whole stack on the node, as a user runs it: `helm install sage charts/sage` with the images
built here, an example manifest applied as written (examples/deterministic-test.yaml), and an
OpenAI request through the gateway answered by the engine pod the operator created. Nothing is
played: the scheduler binds, the kubelet runs, the gateway discovers the engine through the API."""

from __future__ import annotations

import time

import httpx
import pytest

from sage_harness.helm import Helm
from sage_harness.kubectl import Kubectl
from sage_harness.node import Node
from sage_harness.node_images import NodeImages, record
from sage_harness.repo import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "deterministic-test.yaml"


def test_an_example_engine_answers_through_the_gateway(
    node: Node, node_images: NodeImages, node_kubectl: Kubectl, node_namespace: str
) -> None:
    operator, gateway, engine = node_images.ensure("operator", "gateway", "engine")
    values = ["--set", "gateway.replicas=1"]
    for component, reference in (("operator", operator), ("gateway", gateway)):
        repository, _, tag = reference.rpartition(":")
        values += ["--set", f"{component}.image.repository={repository}", "--set", f"{component}.image.tag={tag}"]
    values += ["--set", f"operator.engineImages.engine={engine}"]
    Helm(node.binaries / "helm", node.plane.kubeconfig).install("sage", node_namespace, *values)

    started = time.monotonic()
    node_kubectl("apply", "-n", node_namespace, "-f", str(EXAMPLE))
    deadline = started + 180
    while True:
        engine_object = node_kubectl.json("get", "llmengine", "echo", "-n", node_namespace)
        if engine_object.get("status", {}).get("phase") == "Ready":
            break
        if time.monotonic() > deadline:
            pods = node_kubectl.run("get", "pods", "-n", node_namespace, "-o", "wide", check=False).stdout
            events = node_kubectl.run("get", "events", "-n", node_namespace, check=False).stdout
            pytest.fail(f"LLMEngine echo not Ready: {engine_object.get('status')}\n{pods}\n{events[-4000:]}")
        time.sleep(0.5)
    record("engine-ready", time.monotonic() - started, engine="echo")

    node_kubectl("rollout", "status", "-n", node_namespace, "deployment/sage-gateway", "--timeout=120s")
    (gateway_pod,) = node_kubectl.json(
        "get", "pods", "-n", node_namespace, "-l", "app.kubernetes.io/component=gateway"
    )["items"]
    base = f"http://{gateway_pod['status']['podIP']}:8080"
    deadline = time.monotonic() + 30  # routable within a second of Ready; allow for a slow machine
    while [m["id"] for m in httpx.get(f"{base}/v1/models", timeout=10).json()["data"]] != ["echo"]:
        assert time.monotonic() < deadline, "the gateway never listed the ready engine"
        time.sleep(0.2)
    chat = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "hello"}]},
        timeout=30,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"] == "echo: hello"
    embeddings = httpx.post(f"{base}/v1/embeddings", json={"model": "echo", "input": "hi"}, timeout=30)
    assert embeddings.status_code == 200, embeddings.text
    assert len(embeddings.json()["data"][0]["embedding"]) > 0

    # The engine pod runs the image built here, under the operator's pod security settings.
    (engine_pod,) = node_kubectl.json("get", "pods", "-n", node_namespace, "-l", "sage.ai/engine=echo")["items"]
    assert engine_pod["spec"]["containers"][0]["image"] == engine
    assert engine_pod["spec"]["nodeName"] == node.name
