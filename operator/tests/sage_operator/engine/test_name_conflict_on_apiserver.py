"""Two namespaces' engines claiming one model name: the newer is told, in a NameConflict
condition naming the older, and told again when the older is gone. Against the real API server,
the operator as a process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.waiting import wait_until

ENGINE = """
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}}}
spec: {{model: deterministic, backend: deterministic, servedModelName: chat, replicas: 0}}
"""


@pytest.fixture
def other_namespace(extra_namespace: Callable[[str], str]) -> str:
    return extra_namespace("b")


def name_conflict(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    status = kubectl.json("get", "llmengine", name, "-n", namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "NameConflict"), {})


def test_the_newer_claimant_of_a_name_is_told_who_owns_it(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, other_namespace: str
) -> None:
    kubectl.apply(ENGINE.format(name="first"), namespace)
    wait_until(lambda: kubectl.json("get", "llmengine", "first", "-n", namespace).get("status"), "first's status")
    time.sleep(1.1)  # creationTimestamp has one-second resolution: the second engine is newer
    kubectl.apply(ENGINE.format(name="second"), other_namespace)

    condition = wait_until(
        lambda: (c := name_conflict(kubectl, other_namespace, "second")).get("status") == "True" and c,
        "NameConflict on the newer engine",
    )
    assert condition["reason"] == "NameTaken"
    assert f"model name 'chat' belongs to the older LLMEngine {namespace}/first" in condition["message"]
    assert name_conflict(kubectl, namespace, "first") == {}  # the owner is not bothered

    kubectl("delete", "llmengine", "first", "-n", namespace)
    cleared = wait_until(
        lambda: (c := name_conflict(kubectl, other_namespace, "second")).get("status") == "False" and c,
        "the NameConflict cleared once the older engine is gone",
    )
    assert cleared["reason"] == "NamesOwned"
