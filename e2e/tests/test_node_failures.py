"""Failures as a real kubelet produces them, and what the LLMEngine then says: an image that does
not exist, a model folder that does not exist (the engine's own termination message), an engine
pod deleted while it loads (another takes its place and the gateway routes to it), and engine
logs through `kubectl logs`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from sage_harness import tiny_lm
from sage_harness.cluster_checks import condition, port_forward, wait_phase, wait_status
from sage_harness.kubectl import Kubectl
from sage_harness.node_volumes import copy_model, provide_claim
from sage_harness.waiting import wait_until
from sage_testing.node_fixtures import SageRelease

MISSING_IMAGE = "sage/no-such-engine:0.0.0"


def engine(name: str, **spec: Any) -> str:
    document = {"apiVersion": "sage.ai/v1alpha1", "kind": "LLMEngine", "metadata": {"name": name}, "spec": spec}
    return yaml.safe_dump(document)


SMALL = {"cpu": "250m", "memory": "1Gi"}


@pytest.fixture
def models_claim(node_kubectl: Kubectl, node_namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The claim `models` holding the tiny LM at tiny/."""
    copy_model(tiny_lm.ensure(), tmp_path / "models" / "tiny")
    volume = provide_claim(node_kubectl, node_namespace, "models", tmp_path / "models")
    yield tmp_path / "models"
    node_kubectl.run("delete", "pv", volume, "--wait=false", check=False)


def failed_with(reasons: set[str]) -> Any:
    return lambda status: status.get("phase") == "Failed" and condition(status, "Ready").get("reason") in reasons


def test_an_image_that_does_not_exist_is_named_in_the_status(
    sage_release: SageRelease, node_kubectl: Kubectl, node_namespace: str
) -> None:
    manifest = engine("no-image", model="deterministic", backend="deterministic", image=MISSING_IMAGE, resources=SMALL)
    node_kubectl.apply(manifest, node_namespace)
    status = wait_status(node_kubectl, "llmengine/no-image", node_namespace,
        failed_with({"ErrImagePull", "ImagePullBackOff"}), "Failed: the image cannot be pulled",
    )  # fmt: skip
    assert MISSING_IMAGE in status["message"], status["message"]
    events = node_kubectl("get", "events", "-n", node_namespace, "--field-selector", "involvedObject.name=no-image")
    assert "Failed" in events


def test_a_model_folder_that_does_not_exist_crash_loops_with_the_engines_own_message(
    sage_release: SageRelease, node_kubectl: Kubectl, node_namespace: str, models_claim: Path
) -> None:
    node_kubectl.apply(
        engine("no-model", model="pvc://models/missing", backend="transformers", resources=SMALL), node_namespace
    )
    status = wait_status(node_kubectl, "llmengine/no-model", node_namespace,
        failed_with({"CrashLoopBackOff"}), "Failed: CrashLoopBackOff", timeout=240,
    )  # fmt: skip
    # The engine's termination message, as the kubelet read it from /dev/termination-log.
    # (a claim is mounted at /models/<claim>: pvc://models/missing is /models/models/missing)
    assert "model folder /models/models/missing does not exist" in status["message"], status["message"]
    assert "keeps crashing" in status["message"]


def test_an_engine_pod_deleted_while_it_loads_is_replaced_and_routed_to(
    sage_release: SageRelease, node_kubectl: Kubectl, node_namespace: str, models_claim: Path
) -> None:
    tiny = engine("tiny", model="pvc://models/tiny", backend="transformers", resources=SMALL)
    node_kubectl.apply(tiny, node_namespace)

    def loading_pod() -> dict[str, Any] | None:
        for pod in node_kubectl.json("get", "pods", "-n", node_namespace, "-l", "sage.ai/engine=tiny")["items"]:
            state = (pod["status"].get("containerStatuses") or [{}])[0]
            if "running" in (state.get("state") or {}) and not state.get("ready"):
                return dict(pod)
        return None

    first = wait_until(loading_pod, "the engine container running, not yet Ready", 180, interval=0.2)
    node_kubectl("delete", "pod", first["metadata"]["name"], "-n", node_namespace, "--wait=false")

    status = wait_phase(node_kubectl, "llmengine/tiny", node_namespace, "Ready", timeout=300)
    pods = node_kubectl.json("get", "pods", "-n", node_namespace, "-l", "sage.ai/engine=tiny")["items"]
    (second,) = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert status["endpoint"]

    with port_forward(node_kubectl, sage_release.namespace, "svc/sage-gateway", 80) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=120)
        wait_until(lambda: "tiny" in {m.id for m in client.models.list()}, "the gateway to list tiny", 30)
        answer = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0)
    assert answer.model == "tiny"
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0

    # `kubectl logs` reads the engine's own log through the API server and the kubelet.
    logs = node_kubectl("logs", "-n", node_namespace, "deployment/tiny")
    assert "model '/models/models/tiny' ready, serving as ['tiny']" in logs, logs[-2000:]
