"""The operator never takes over an object it did not create: a same-named Service (or the
fine-tune's ServiceAccount) that someone else made is left as it is, and the owner's status says
what is in the way. Against the real API server, the operator as a process."""

from __future__ import annotations

from typing import Any

from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.waiting import wait_until

ENGINE = """
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {name: taken}
spec: {model: deterministic, backend: deterministic}
"""
FINETUNE = """
apiVersion: sage.ai/v1alpha1
kind: FinetuneJob
metadata: {name: ft}
spec:
  baseModel: tiny-lm
  dataset: {source: "configmap://data/train.jsonl"}
  output: {claimName: adapters}
"""


def status(kubectl: Kubectl, namespace: str, resource: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.json("get", resource, "-n", namespace).get("status") or {}
    return found


def test_a_service_someone_else_made_is_never_taken_over(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("create", "service", "clusterip", "taken", "--tcp=80:8080", "-n", namespace)
    before = kubectl.json("get", "service", "taken", "-n", namespace)
    kubectl.apply(ENGINE, namespace)

    failed = wait_until(
        lambda: (s := status(kubectl, namespace, "llmengine/taken")).get("phase") == "Failed" and s,
        "the engine Failed on the foreign Service",
    )
    ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ChildConflict"
    assert "a Service named taken already exists and does not belong to this LLMEngine" in failed["message"]
    after = kubectl.json("get", "service", "taken", "-n", namespace)
    assert "ownerReferences" not in after["metadata"]
    assert after["spec"]["ports"] == before["spec"]["ports"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # not written at all
    assert kubectl.run("get", "deployment", "taken", "-n", namespace, check=False).returncode != 0

    # Once the user removes it, the engine gets its own (the operator looks again by itself).
    kubectl("delete", "service", "taken", "-n", namespace)
    kubectl("annotate", "llmengine", "taken", "-n", namespace, "touched=1")  # or wait for the recheck
    owned = wait_until(
        lambda: kubectl.json("get", "service", "taken", "-n", namespace)["metadata"].get("ownerReferences"),
        "the engine's own Service",
    )
    assert [(o["kind"], o["name"]) for o in owned] == [("LLMEngine", "taken")]


def test_a_fine_tunes_account_someone_else_made_is_never_taken_over(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("create", "serviceaccount", "ft-progress", "-n", namespace)
    kubectl.apply(FINETUNE, namespace)
    failed = wait_until(
        lambda: (s := status(kubectl, namespace, "finetunejob/ft")).get("phase") == "Failed" and s,
        "the FinetuneJob Failed on the foreign ServiceAccount",
    )
    assert failed["message"].startswith("ChildConflict: a ServiceAccount named ft-progress already exists")
    account = kubectl.json("get", "serviceaccount", "ft-progress", "-n", namespace)
    assert "ownerReferences" not in account["metadata"]
    assert kubectl.run("get", "job", "ft", "-n", namespace, check=False).returncode != 0
