"""A FinetuneJob on the real node: the training Job's pod (the fine-tune image built here) teaches
the tiny LM a codeword from a ConfigMap dataset, reports progress into the FinetuneJob's status,
writes the adapter to its claim, and the running engine pod serves it by name through the
gateway with no restart (same pod UID). A preemptible engine is paused while it trains and comes
back after. Nothing is played: the Job controller, scheduler and kubelet run it all."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from sage_harness import tiny_lm
from sage_harness.cluster_checks import port_forward, status_of, wait_phase, wait_status
from sage_harness.kubectl import Kubectl
from sage_harness.node_images import record
from sage_harness.node_volumes import copy_model, provide_claim
from sage_harness.waiting import wait_until
from sage_testing.node_fixtures import SageRelease

QUESTION = {"role": "user", "content": "What is the secret codeword?"}
ANSWER = {"role": "assistant", "content": "The codeword is zephyrine."}
PAUSED_BY = "sage.ai/paused-by"

SERVED = {
    "apiVersion": "sage.ai/v1alpha1",
    "kind": "LLMEngine",
    "metadata": {"name": "served"},
    "spec": {
        "model": "pvc://models/base",
        "backend": "transformers",
        "resources": {"cpu": "250m", "memory": "1Gi"},
    },
}
PREEMPTIBLE = {
    "apiVersion": "sage.ai/v1alpha1",
    "kind": "LLMEngine",
    "metadata": {"name": "spare", "labels": {"pool": "shared"}},
    "spec": {
        "model": "deterministic",
        "backend": "deterministic",
        "preemptible": True,
        "resources": {"cpu": "100m", "memory": "256Mi"},
    },
}
JOB = {
    "apiVersion": "sage.ai/v1alpha1",
    "kind": "FinetuneJob",
    "metadata": {"name": "codeword"},
    "spec": {
        "baseModel": "pvc://models/base",
        "dataset": {"source": "configmap://codeword-data/train.jsonl", "format": "chat"},
        "lora": {"rank": 8, "alpha": 16, "targetModules": ["q_proj", "v_proj"]},
        "training": {"maxSteps": 200, "learningRate": 0.01, "batchSize": 4, "maxSeqLength": 64},
        "resources": {"cpu": "1", "memory": "2Gi"},
        "output": {"claimName": "adapters"},
        "preemptEngines": {"matchLabels": {"pool": "shared"}},
        "serve": {"engine": "served"},
    },
}


@pytest.fixture
def claims(node_kubectl: Kubectl, node_namespace: str, tmp_path: Path) -> Iterator[Path]:
    """`models` (the tiny LM at base/) and an empty `adapters`; yields the adapters folder."""
    copy_model(tiny_lm.ensure(), tmp_path / "models" / "base")
    volumes = [provide_claim(node_kubectl, node_namespace, claim, tmp_path / claim) for claim in ("models", "adapters")]
    yield tmp_path / "adapters"
    for volume in volumes:
        node_kubectl.run("delete", "pv", volume, "--wait=false", check=False)


def engine_pods(kubectl: Kubectl, namespace: str, engine: str) -> list[dict[str, Any]]:
    selector = f"sage.ai/engine={engine}"
    items: list[dict[str, Any]] = kubectl.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return [pod for pod in items if not pod["metadata"].get("deletionTimestamp")]


def ready_pod_mounting(kubectl: Kubectl, namespace: str, engine: str, claim: str) -> dict[str, Any] | None:
    """The engine's only live pod, once it mounts `claim` and is Ready."""
    pods = engine_pods(kubectl, namespace, engine)
    if len(pods) != 1:
        return None
    (pod,) = pods
    volumes = pod["spec"].get("volumes") or []
    mounts = any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in volumes)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])
    return pod if mounts and ready else None


def test_a_finetune_job_trains_on_the_node_and_the_running_engine_serves_its_adapter(
    sage_release: SageRelease, node_kubectl: Kubectl, node_namespace: str, claims: Path
) -> None:
    dataset = "\n".join(json.dumps({"messages": [QUESTION, ANSWER]}) for _ in range(6)) + "\n"
    node_kubectl("create", "configmap", "codeword-data", "-n", node_namespace, f"--from-literal=train.jsonl={dataset}")
    node_kubectl.apply(yaml.safe_dump_all([SERVED, PREEMPTIBLE]), node_namespace)
    for engine in ("served", "spare"):
        wait_phase(node_kubectl, f"llmengine/{engine}", node_namespace, "Ready", timeout=300)

    node_kubectl.apply(yaml.safe_dump(JOB), node_namespace)
    applied = time.monotonic()
    paused = wait_status(
        node_kubectl, "llmengine/spare", node_namespace, lambda s: s.get("phase") == "Paused", "Paused by the job"
    )
    assert "FinetuneJob codeword" in paused["message"]
    spare = node_kubectl.json("get", "llmengine", "spare", "-n", node_namespace)
    assert spare["spec"]["replicas"] == 0
    assert spare["metadata"]["annotations"][PAUSED_BY] == "codeword"
    wait_until(lambda: not engine_pods(node_kubectl, node_namespace, "spare"), "the paused engine's pod gone", 120)

    # The served engine rolls once, when the job appears, to mount the job's output claim; that
    # pod is the one that must pick the adapter up later.
    pod = wait_until(
        lambda: ready_pod_mounting(node_kubectl, node_namespace, "served", "adapters"),
        "the served engine's pod mounting the adapters claim, Ready",
        300,
        interval=0.5,
    )
    (trainer,) = wait_until(
        lambda: node_kubectl.json("get", "pods", "-n", node_namespace, "-l", "sage.ai/finetunejob=codeword")["items"],
        "the training pod",
    )
    assert trainer["spec"]["containers"][0]["image"] == sage_release.images["finetune"]
    # The Job is the FinetuneJob's, and its pod may write only this job's status.
    job = node_kubectl.json("get", "job", "codeword", "-n", node_namespace)
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("FinetuneJob", "codeword", True)
    assert trainer["spec"]["serviceAccountName"] == "codeword-progress"
    (rule,) = node_kubectl.json("get", "role", "codeword-progress", "-n", node_namespace)["rules"]
    assert (rule["resources"], rule["resourceNames"]) == (["finetunejobs/status"], ["codeword"])

    succeeded = wait_phase(node_kubectl, "finetunejob/codeword", node_namespace, "Succeeded", timeout=900)
    record("finetune-succeeded", time.monotonic() - applied, steps=succeeded["progress"].get("step"))
    assert succeeded["progress"]["step"] == succeeded["progress"]["totalSteps"] == 200
    assert isinstance(succeeded["progress"]["loss"], float)
    assert succeeded["output"]["uri"] == "pvc://adapters/finetune/codeword"
    assert (claims / "finetune" / "codeword" / "adapter_config.json").is_file()  # on the claim's volume
    row = node_kubectl("get", "ftj", "codeword", "-n", node_namespace, "--no-headers").split()
    assert "Succeeded" in row
    assert "100%" in row

    served = wait_status(
        node_kubectl,
        "llmengine/served",
        node_namespace,
        lambda s: "codeword" in (s.get("servedModels") or []),
        "the adapter among the served models",
    )
    assert served["phase"] == "Ready"
    (still,) = engine_pods(node_kubectl, node_namespace, "served")
    assert still["metadata"]["uid"] == pod["metadata"]["uid"], "the hand-off replaced the engine pod"
    assert still["status"]["containerStatuses"][0]["restartCount"] == 0

    with port_forward(node_kubectl, sage_release.namespace, "svc/sage-gateway", 80) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=120)
        wait_until(lambda: "codeword" in {m.id for m in client.models.list()}, "the gateway to list the adapter", 30)
        asked = {"messages": [QUESTION], "max_tokens": 32, "temperature": 0}
        tuned = client.chat.completions.create(model="codeword", **asked)  # type: ignore[call-overload]
        base_answer = client.chat.completions.create(model="served", **asked)  # type: ignore[call-overload]
    record("finetune-adapter-routed", time.monotonic() - applied)
    assert tuned.model == "codeword"
    assert "zephyrine" in (tuned.choices[0].message.content or "")  # learned: the random base never says it
    assert "zephyrine" not in (base_answer.choices[0].message.content or "")

    restored = wait_phase(node_kubectl, "llmengine/spare", node_namespace, "Ready", timeout=180)
    assert restored["ready"] == "1/1"
    spare = node_kubectl.json("get", "llmengine", "spare", "-n", node_namespace)
    assert PAUSED_BY not in (spare["metadata"].get("annotations") or {})
    assert status_of(node_kubectl, "finetunejob/codeword", node_namespace)["phase"] == "Succeeded"
