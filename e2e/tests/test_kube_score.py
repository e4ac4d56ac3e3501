"""`make lint` runs kube-score over the chart's render and the operator's children
(sage_harness.kube_score). These prove that the lint can fail: its ignores are by rule name and
never wide enough to hide a pod that declares too little."""

from __future__ import annotations

from pathlib import Path

from sage_harness import kube_score
from sage_harness.helm import Helm


def test_what_sage_ships_has_no_findings(kube_binaries: Path) -> None:
    objects = kube_score.chart_objects(Helm(kube_binaries / "helm")) + kube_score.operator_children()
    assert {o["kind"] for o in objects} >= {"Deployment", "Job", "NetworkPolicy", "PodDisruptionBudget", "Service"}
    result = kube_score.score(kube_binaries / "kube-score", objects)
    assert (result.returncode, kube_score.findings(result.stdout)) == (0, [])


def test_an_engine_pod_without_requests_or_readiness_is_reported(kube_binaries: Path) -> None:
    objects = kube_score.operator_children()
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    del container["resources"], container["readinessProbe"]
    result = kube_score.score(kube_binaries / "kube-score", objects)
    found = kube_score.findings(result.stdout)
    name = f"{deployment['metadata']['name']}/{deployment['metadata']['namespace']} apps/v1/Deployment"
    assert f"[CRITICAL] {name}: (engine) CPU request is not set" in found
    assert f"[CRITICAL] {name}: Container is missing a readinessProbe" in found
    assert result.returncode == 1


def test_a_chart_pod_without_a_memory_limit_is_reported(kube_binaries: Path) -> None:
    """The chart's pods are scored as strictly as the engines."""
    objects = kube_score.chart_objects(Helm(kube_binaries / "helm"))
    gateway = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("gateway"))
    del gateway["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    found = kube_score.findings(kube_score.score(kube_binaries / "kube-score", objects).stdout)
    assert "[CRITICAL] sage-gateway/sage-system apps/v1/Deployment: (gateway) Memory limit is not set" in found
