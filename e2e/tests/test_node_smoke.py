"""The node tier's first real pods: the gateway image built here runs under the restricted pod
security profile on a real kubelet, answers its readiness probe, logs through `kubectl logs`, and
is reached at its pod IP; `helm install sage charts/sage` with the images built here brings both
Deployments to Ready pods under the restricted profile (they talk to the API server in-cluster).
`kubectl logs`, `exec` and `port-forward` reach the pod through the API server and the kubelet."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import yaml

from sage_harness.cluster_checks import namespace_report, port_forward
from sage_harness.kubectl import Kubectl
from sage_harness.node import Node
from sage_harness.node_images import NodeImages, record
from sage_harness.repo import REPO_ROOT
from sage_harness.waiting import wait_until
from sage_testing.node_fixtures import SageRelease

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


def wait_ready(kubectl: Kubectl, namespace: str, what: str, timeout: int = 180) -> None:
    result = kubectl.run("wait", "-n", namespace, "--for=condition=Ready", f"--timeout={timeout}s", what, check=False)
    if result.returncode != 0:
        pytest.fail(f"{what} not Ready in {timeout}s:\n{result.stderr}\n{namespace_report(kubectl, namespace)}")


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
    with port_forward(node_kubectl, node_namespace, "pod/gateway", 8080) as forwarded:
        assert httpx.get(f"{forwarded}/readyz", timeout=10).status_code == 200

    response = httpx.get(f"http://{pod['status']['podIP']}:8080/v1/models", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert body["data"] == []  # engine "x" has no URL, so no ready replica: nothing routable yet


def test_helm_install_brings_the_operator_and_gateway_up_under_restricted(
    sage_release: SageRelease, node_kubectl: Kubectl, node_namespace: str
) -> None:
    """The session's release (the README's `helm install` line) in a namespace enforcing the
    restricted Pod Security Standard: both Deployments' pods admitted, Ready, on this node."""
    labels = node_kubectl.json("get", "namespace", sage_release.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = node_kubectl.json("get", "pods", "-n", sage_release.namespace)["items"]
    ready = {
        pod["metadata"]["labels"].get("app.kubernetes.io/component"): pod
        for pod in pods
        if all(s["ready"] for s in pod["status"].get("containerStatuses", [{"ready": False}]))
    }
    assert {"operator", "gateway"} <= set(ready)
    for component in ("operator", "gateway"):
        assert ready[component]["spec"]["containers"][0]["image"] == sage_release.images[component]

    # The operator reconciles from inside its pod (in-cluster config through the kubernetes
    # Service): an engine gets its Deployment, owned by the LLMEngine.
    node_kubectl("apply", "-n", node_namespace, "-f", str(EXAMPLES / "deterministic-test.yaml"))
    wait_until(
        lambda: node_kubectl.run("get", "deployment", "echo", "-n", node_namespace, check=False).returncode == 0,
        "the operator to render the example engine's Deployment",
        60,
        interval=0.5,
    )
    owners = node_kubectl.json("get", "deployment", "echo", "-n", node_namespace)["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("LLMEngine", "echo")]
