"""The CRDs on a real kube-apiserver, used with kubectl as a user would type it."""

from __future__ import annotations

from typing import Any

import pytest

from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.repo import REPO_ROOT
from sage_harness.waiting import wait_until
from sage_testing.kubelet import live_pods, report_pod_ready

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_applies(kubectl: Kubectl, namespace: str, example: object) -> None:
    out = kubectl("apply", "-n", namespace, "-f", str(example))
    assert "created" in out


def test_get_llmengines_prints_the_columns(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "embedding-minilm.yaml"))
    header, row = kubectl("get", "llmengines", "-n", namespace).splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "KIND", "BACKEND", "READY", "PHASE", "AGE"]
    assert row.split()[:3] == ["minilm", "sentence-transformers/all-MiniLM-L6-v2", "embedding"]
    wide = kubectl("get", "llme", "-n", namespace, "-o", "wide").splitlines()[0].split()
    assert wide[-3:] == ["ENDPOINT", "SERVED", "SCALING"]
    # The category lists both kinds.
    assert "llmengine.sage.ai/minilm" in kubectl("get", "sage", "-n", namespace, "-o", "name")


def test_get_ftj_prints_the_columns(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "finetune-lora.yaml"))
    header, row = kubectl("get", "ftj", "-n", namespace).splitlines()[:2]
    assert header.split() == ["NAME", "BASE", "PHASE", "PROGRESS", "LOSS", "AGE"]
    assert row.split()[:2] == ["support-ft", "Qwen/Qwen2.5-0.5B-Instruct"]


def test_status_columns_render_what_the_operator_writes(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "embedding-minilm.yaml"))
    kubectl("scale", "llmengine/minilm", "-n", namespace, "--replicas=2")

    def two_pods() -> list[dict[str, Any]] | None:
        pods = live_pods(kubectl, namespace, "sage.ai/engine=minilm")
        return pods if len(pods) == 2 else None

    first = wait_until(two_pods, "the engine's two pods")[0]
    report_pod_ready(kubectl, namespace, first["metadata"]["name"], container="engine", ip="198.18.255.1")

    def row() -> list[str]:
        return kubectl("get", "llme", "minilm", "-n", namespace, "--no-headers").split()

    wait_until(lambda: row()[3:6] == ["sentence-transformers", "1/2", "Degraded"], "the Degraded row", 60)


def test_explain_describes_fields(kubectl: Kubectl) -> None:
    out = kubectl("explain", "llmengine.spec.model")
    assert "hf://" in out
    assert "pvc://" in out
    out = kubectl("explain", "finetunejob.spec.dataset.format")
    assert "instruction" in out


def test_scale_changes_spec_replicas(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "deterministic-test.yaml"))
    kubectl("scale", "llmengine/echo", "-n", namespace, "--replicas=3")
    assert kubectl.json("get", "llmengine", "echo", "-n", namespace)["spec"]["replicas"] == 3


def test_defaults_are_applied_by_the_server(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        "apiVersion: sage.ai/v1alpha1\nkind: LLMEngine\nmetadata: {name: bare}\nspec: {model: m}\n", namespace
    )
    spec = kubectl.json("get", "llmengine", "bare", "-n", namespace)["spec"]
    assert spec["engineKind"] == "llm"
    assert spec["replicas"] == 1


ENGINE = "apiVersion: sage.ai/v1alpha1\nkind: LLMEngine\nmetadata: {{name: bad}}\nspec: {spec}\n"
FINETUNE = (
    "apiVersion: sage.ai/v1alpha1\nkind: FinetuneJob\nmetadata: {{name: bad}}\n"
    "spec: {{baseModel: m, output: {{claimName: out}}, dataset: {dataset}}}\n"
)

INVALID = {
    "unknown engineKind": (ENGINE.format(spec="{model: m, engineKind: chat}"), "spec.engineKind"),
    "negative replicas": (ENGINE.format(spec="{model: m, replicas: -1}"), "spec.replicas"),
    "gpus as a word": (ENGINE.format(spec='{model: m, resources: {gpus: "two"}}'), "spec.resources.gpus"),
    "missing model": (ENGINE.format(spec="{engineKind: llm}"), "spec.model"),
    "minReplicas above maxReplicas": (
        ENGINE.format(spec="{model: m, minReplicas: 3, maxReplicas: 2}"),
        "spec.minReplicas",
    ),
    "duplicate adapter names": (
        ENGINE.format(spec="{model: m, adapters: [{name: a, source: x}, {name: a, source: y}]}"),
        "spec.adapters[1]",
    ),
    "adapter with two sources": (
        ENGINE.format(spec="{model: m, adapters: [{name: a, source: x, finetuneJob: j}]}"),
        "spec.adapters[0]",
    ),
    "malformed pvc model": (ENGINE.format(spec="{model: 'pvc://Claim'}"), "spec.model"),
    "unknown backend": (ENGINE.format(spec="{model: m, backend: tgi}"), "spec.backend"),
    "unknown dataset format": (
        FINETUNE.format(dataset="{source: 'pvc://data/train.jsonl', format: csv}"),
        "spec.dataset.format",
    ),
    "dataset from nowhere": (FINETUNE.format(dataset="{source: 's3://bucket/x'}"), "spec.dataset.source"),
    # Combinations no engine can serve: refused now, not accepted and then Failed by the operator.
    "llm on an embedding-only backend": (
        ENGINE.format(spec="{model: m, backend: sentence-transformers}"),
        "backend cannot serve this engineKind",
    ),
    "embedding on transformers": (
        ENGINE.format(spec="{model: m, engineKind: embedding, backend: transformers}"),
        "spec.backend",
    ),
    "vllm without a GPU": (ENGINE.format(spec="{model: m, backend: vllm}"), "needs at least one GPU"),
    "vllm with zero GPUs": (
        ENGINE.format(spec="{model: m, backend: vllm, resources: {gpus: 0}}"),
        "spec.resources",
    ),
    "adapters on an embedding engine": (
        ENGINE.format(spec="{model: m, engineKind: embedding, adapters: [{name: a, source: x}]}"),
        "spec.adapters",
    ),
    # Names the children cannot take: refused now, not Failed later when the Service or Job is.
    "engine name longer than a Service name": (
        ENGINE.replace("name: bad", "name: " + "e" * 70).format(spec="{model: m}"),
        "metadata.name must be at most 63 characters",
    ),
    "engine name a Service cannot take": (
        ENGINE.replace("name: bad", "name: 1chat").format(spec="{model: m}"),
        "metadata.name must start with a letter",
    ),
    "fine-tune name longer than a Job's label": (
        FINETUNE.replace("name: bad", "name: " + "f" * 70).format(dataset="{source: 'pvc://data/t.jsonl'}"),
        "metadata.name must be at most 63 characters",
    ),
}


@pytest.mark.parametrize(("manifest", "field"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_manifest_is_refused_naming_the_field(
    kubectl: Kubectl, namespace: str, manifest: str, field: str
) -> None:
    result = kubectl.run("apply", "-n", namespace, "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0, "the API server accepted an invalid manifest"
    assert field in result.stderr, result.stderr
