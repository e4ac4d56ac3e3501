"""The node tier's first real pods: the gateway image built here runs under the restricted pod
security profile on a real kubelet, answers its readiness probe, logs through `kubectl logs`, and
is reached at its pod IP; `helm install sage charts/sage` with the operator and gateway images
built here brings both Deployments to Ready pods (they talk to the API server in-cluster).
`kubectl logs`, `exec` and `port-forward` reach the pod through the API server and the kubelet."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import httpx
import pytest
import yaml

from sage_harness.helm import CHART, Helm
from sage_harness.kubectl import Kubectl
from sage_harness.net import free_port
from sage_harness.node import Node
from sage_harness.node_images import NodeImages, record
from sage_harness.repo import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def gateway_pod(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gateway", "labels": {"app": "gateway"}},
        "spec": {
            "securityContext": RESTRICTED_POD,
            "containers": [
                {
                    "name": "gateway",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "env": [
                        {"name": "SAGE_GATEWAY_DISCOVERY", "value": "static"},
                        {"name": "SAGE_GATEWAY_STATIC_ENGINES", "value": json.dumps([{"name": "x", "urls": []}])},
                    ],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
                    "securityContext": RESTRICTED_CONTAINER,
                }
            ],
        },
    }


def port_forward_get(kubectl: Kubectl, namespace: str, target: str, port: int, path: str) -> httpx.Response:
    """GET `path` through `kubectl port-forward` to `target`'s `port`."""
    local = free_port()
    argv = [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "port-forward", "-n", namespace, target]
    forward = subprocess.Popen([*argv, f"{local}:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                return httpx.get(f"http://127.0.0.1:{local}{path}", timeout=5)
            except httpx.TransportError:
                if time.monotonic() > deadline or forward.poll() is not None:
                    raise
                time.sleep(0.3)
    finally:
        forward.terminate()
        forward.communicate(timeout=10)


def wait_ready(kubectl: Kubectl, namespace: str, what: str, timeout: int = 180) -> None:
    result = kubectl.run("wait", "-n", namespace, "--for=condition=Ready", f"--timeout={timeout}s", what, check=False)
    if result.returncode != 0:
        pods = kubectl.run("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        events = kubectl.run("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
        pytest.fail(f"{what} not Ready in {timeout}s:\n{result.stderr}\n{pods}\n{events[-4000:]}")


def test_the_gateway_image_runs_restricted_on_the_node(
    node: Node, node_images: NodeImages, node_kubectl: Kubectl, node_namespace: str
) -> None:
    (image,) = node_images.ensure("gateway")
    started = time.monotonic()
    node_kubectl.apply(yaml.safe_dump(gateway_pod(image)), node_namespace)
    wait_ready(node_kubectl, node_namespace, "pod/gateway")
    record("pod-ready", time.monotonic() - started, pod="gateway", node_ready_after=round(node.ready_after, 1))

    pod = node_kubectl.json("get", "pod", "gateway", "-n", node_namespace)
    assert pod["spec"]["nodeName"] == node.name
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True
    assert status["restartCount"] == 0

    logs = node_kubectl("logs", "-n", node_namespace, "gateway")
    assert "Uvicorn running" in logs or "Application startup complete" in logs, logs

    # `kubectl exec` (API server -> kubelet -> CRI): the restricted profile holds inside.
    identity = node_kubectl(
        "exec", "-n", node_namespace, "gateway", "--", "python", "-c",
        "import os; print(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])",
    )  # fmt: skip
    assert identity.split() == ["10001", "0000000000000000"]

    # `kubectl port-forward` reaches the container's port from this host's loopback.
    assert port_forward_get(node_kubectl, node_namespace, "pod/gateway", 8080, "/readyz").status_code == 200

    response = httpx.get(f"http://{pod['status']['podIP']}:8080/v1/models", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert body["data"] == []  # engine "x" has no URL, so no ready replica: nothing routable yet


def test_helm_install_brings_the_operator_and_gateway_up(
    node: Node, node_images: NodeImages, node_kubectl: Kubectl, node_namespace: str
) -> None:
    operator, gateway = node_images.ensure("operator", "gateway")
    helm = Helm(node.binaries / "helm", node.plane.kubeconfig)
    values = []
    for component, reference in (("operator", operator), ("gateway", gateway)):
        repository, _, tag = reference.rpartition(":")
        values += ["--set", f"{component}.image.repository={repository}", "--set", f"{component}.image.tag={tag}"]
    started = time.monotonic()
    helm.install("sage", node_namespace, *values)
    for deployment in ("sage-operator", "sage-gateway"):
        result = node_kubectl.run(
            "rollout", "status", "-n", node_namespace, f"deployment/{deployment}", "--timeout=240s", check=False
        )
        if result.returncode != 0:
            pods = node_kubectl.run("get", "pods", "-n", node_namespace, "-o", "wide", check=False).stdout
            events = node_kubectl.run("get", "events", "-n", node_namespace, check=False).stdout
            logs = node_kubectl.run(
                "logs", "-n", node_namespace, f"deployment/{deployment}", "--tail=40", check=False
            ).stdout
            pytest.fail(f"{deployment} not rolled out:\n{result.stderr}\n{pods}\n{events[-4000:]}\n{logs}")
    record("helm-ready", time.monotonic() - started, chart=str(CHART))
    pods = node_kubectl.json("get", "pods", "-n", node_namespace)["items"]
    ready = {
        pod["metadata"]["labels"].get("app.kubernetes.io/component"): pod
        for pod in pods
        if all(s["ready"] for s in pod["status"].get("containerStatuses", [{"ready": False}]))
    }
    assert {"operator", "gateway"} <= set(ready)

    # The operator reconciles from inside its pod (in-cluster config through the kubernetes
    # Service): the example engine gets its Deployment, owned by the LLMEngine.
    node_kubectl("apply", "-n", node_namespace, "-f", str(EXAMPLES / "deterministic-test.yaml"))
    deadline = time.monotonic() + 60
    while node_kubectl.run("get", "deployment", "echo", "-n", node_namespace, check=False).returncode != 0:
        if time.monotonic() > deadline:
            tail = node_kubectl.run("logs", "-n", node_namespace, "deployment/sage-operator", "--tail=60", check=False)
            pytest.fail(f"the operator rendered no Deployment for the example engine:\n{tail.stdout}")
        time.sleep(0.5)
    owners = node_kubectl.json("get", "deployment", "echo", "-n", node_namespace)["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("LLMEngine", "echo")]
