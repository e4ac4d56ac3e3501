"""Pod Security on a real node: in a namespace that enforces the `restricted` Pod Security Standard
(what security-conscious clusters set), the pods SAGE creates must be admitted.

The chart's own pods are. The pods the operator renders are not yet: the expected failures below
are the product bugs this tier exposed (e2e/node/FINDINGS.md, "Product bugs"); they are strict,
so the day the operator is fixed they fail as XPASS and the markers must go."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from sage_harness.helm import Helm
from sage_harness.kubectl import Kubectl
from sage_harness.node import Node
from sage_harness.node_images import NodeImages
from sage_harness.repo import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
ENFORCE = "pod-security.kubernetes.io/enforce=restricted"


def pods(kubectl: Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return items


def eventually_pods(kubectl: Kubectl, namespace: str, selector: str, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not (found := pods(kubectl, namespace, selector)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


@pytest.fixture
def restricted_sage(node: Node, node_images: NodeImages, node_kubectl: Kubectl, node_namespace: str) -> str:
    """The chart installed (images built here) in a namespace enforcing `restricted`."""
    node_kubectl("label", "namespace", node_namespace, ENFORCE)
    operator, gateway = node_images.ensure("operator", "gateway")
    values = ["--set", "gateway.replicas=1"]
    for component, reference in (("operator", operator), ("gateway", gateway)):
        repository, _, tag = reference.rpartition(":")
        values += ["--set", f"{component}.image.repository={repository}", "--set", f"{component}.image.tag={tag}"]
    Helm(node.binaries / "helm", node.plane.kubeconfig).install("sage", node_namespace, *values)
    for deployment in ("sage-operator", "sage-gateway"):
        node_kubectl("rollout", "status", "-n", node_namespace, f"deployment/{deployment}", "--timeout=180s")
    return node_namespace


def test_the_charts_pods_are_admitted_under_restricted(node_kubectl: Kubectl, restricted_sage: str) -> None:
    for component in ("operator", "gateway"):
        (pod,) = pods(node_kubectl, restricted_sage, f"app.kubernetes.io/component={component}")
        assert pod["status"]["phase"] == "Running"


def test_engine_pods_are_admitted_under_restricted(
    node_images: NodeImages, node_kubectl: Kubectl, restricted_sage: str
) -> None:
    node_images.ensure("engine")
    node_kubectl("apply", "-n", restricted_sage, "-f", str(EXAMPLES / "deterministic-test.yaml"))
    assert eventually_pods(node_kubectl, restricted_sage, "sage.ai/engine=echo"), "no engine pod was admitted"


def test_finetune_pods_are_admitted_under_restricted(node_kubectl: Kubectl, restricted_sage: str) -> None:
    node_kubectl("create", "configmap", "support-data", "-n", restricted_sage, "--from-literal=train.jsonl={}")
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "adapters"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    node_kubectl.apply(yaml.safe_dump(claim), restricted_sage)
    job = yaml.safe_load((EXAMPLES / "finetune-lora.yaml").read_text())
    for key in ("serve", "preemptEngines"):  # no engine to hand to or preempt here
        job["spec"].pop(key, None)
    node_kubectl.apply(yaml.safe_dump(job), restricted_sage)
    found = eventually_pods(node_kubectl, restricted_sage, "sage.ai/finetunejob=support-ft")
    assert found, "no training pod was admitted"
    assert found[0]["spec"]["securityContext"].get("runAsUser") == 10001  # the image's user
