"""Every golden engine's rendered Deployment and Service, applied to the real API server, comes
back holding every rendered field unchanged (no server-side normalisation): so `covers()` sees a
steady state and the operator does not re-apply it on every reconcile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sage_api.engine import LLMEngine
from sage_harness.kubectl import Kubectl
from sage_operator.core.metadata import covers
from sage_operator.engine.render import render_engine_deployment, render_engine_service
from sage_operator.settings import OperatorSettings

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if (path / "engine.yaml").exists())


def without_owner(manifest: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The owner does not exist here (the garbage collector would remove an orphan)."""
    metadata = {k: v for k, v in manifest["metadata"].items() if k != "ownerReferences"}
    return {**manifest, "metadata": {**metadata, "namespace": namespace}}


@pytest.mark.parametrize("case", CASES)
def test_rendered_children_survive_the_api_server_unchanged(kubectl: Kubectl, namespace: str, case: str) -> None:
    engine = LLMEngine.model_validate(yaml.safe_load((GOLDEN / case / "engine.yaml").read_text()))
    settings = OperatorSettings()
    for rendered in (render_engine_service(engine), render_engine_deployment(engine, settings)):
        desired = without_owner(rendered, namespace)
        stored = json.loads(
            kubectl(
                "apply",
                "--server-side",
                "--field-manager=sage-operator",
                "-o",
                "json",
                "-f",
                "-",
                stdin=json.dumps(desired),
            )
        )
        assert covers(stored, desired), f"{desired['kind']} of {case} is normalised by the API server"


def pod_of(template: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    """The pod a controller would make from `template`."""
    metadata = {**template.get("metadata", {}), "name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


@pytest.mark.parametrize("case", [case for case in CASES if case != "vllm"])
def test_engine_pods_pass_the_restricted_pod_security_standard(kubectl: Kubectl, namespace: str, case: str) -> None:
    """PodSecurity admission enforcing `restricted` admits the pods (vLLM's template asks for a
    GPU and a memory-backed /dev/shm, which the standard allows too, but is checked on the node)."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    engine = LLMEngine.model_validate(yaml.safe_load((GOLDEN / case / "engine.yaml").read_text()))
    template = render_engine_deployment(engine, OperatorSettings())["spec"]["template"]
    result = kubectl.run(
        "create", "--dry-run=server", "-o", "name", "-f", "-", stdin=json.dumps(pod_of(template, "p", namespace)),
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
