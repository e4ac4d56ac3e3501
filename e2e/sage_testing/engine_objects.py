"""LLMEngines and their children on the test API server, read and driven with kubectl: apply an
engine, read its objects and status, play the kubelet for its pods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sage_harness.kubectl import Kubectl
from sage_harness.waiting import wait_until
from sage_testing.kubelet import report_pod_ready

ENGINE = """
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}}}
spec:
  model: deterministic
  backend: {backend}
  engineKind: {kind}
  replicas: {replicas}
"""


def apply_engine(
    kubectl: Kubectl, ns: str, name: str, *, backend: str = "deterministic", kind: str = "llm", replicas: int = 1
) -> None:
    kubectl.apply(ENGINE.format(name=name, backend=backend, kind=kind, replicas=replicas), ns)


def get(kubectl: Kubectl, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    result = kubectl.run("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def must_get(kubectl: Kubectl, ns: str, kind: str, name: str) -> dict[str, Any]:
    found = get(kubectl, ns, kind, name)
    assert found is not None, f"{kind} {ns}/{name} does not exist"
    return found


def engine_status(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    engine = get(kubectl, ns, "llmengine", name) or {}
    status: dict[str, Any] = engine.get("status") or {}
    return status


def wait_phase(kubectl: Kubectl, ns: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = engine_status(kubectl, ns, name)
        return status if status.get("phase") == phase else None

    return wait_until(reached, f"engine {ns}/{name} phase {phase}", timeout)


def engine_pods(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "pods", "-n", ns, "-l", f"sage.ai/engine={name}")["items"]
    return [pod for pod in items if not pod["metadata"].get("deletionTimestamp")]


def the_pod(kubectl: Kubectl, ns: str, name: str) -> str:
    pods = wait_until(lambda: engine_pods(kubectl, ns, name), f"a pod of {name}")
    return str(pods[0]["metadata"]["name"])


def set_pod_status(kubectl: Kubectl, ns: str, pod: str, *, ready: bool, containers: list[dict[str, Any]] | None = None,
                   ip: str = "127.0.0.1", restarts: int = 0) -> None:  # fmt: skip
    """What a kubelet would report: scheduled, running, ready or not."""
    report_pod_ready(kubectl, ns, pod, container="engine", ip=ip, ready=ready, restarts=restarts, containers=containers)


def event_reasons(kubectl: Kubectl, ns: str, name: str) -> list[str]:
    events = kubectl.json(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name},involvedObject.kind=LLMEngine"
    )
    return [e["reason"] for e in sorted(events["items"], key=lambda e: e["metadata"]["creationTimestamp"])]


SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  labels: {{kubernetes.io/service-name: {engine}, sage.ai/engine: {engine}}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- addresses: ["{address}"]
  conditions: {{ready: {ready}}}
"""


def endpoint_slice(engine: str, address: str, port: int, *, ready: bool = True, name: str | None = None) -> str:
    """The EndpointSlice the EndpointSlice controller would write for one pod of `engine` (tests
    without a kubelet play its part); named `<engine>-a` unless told."""
    state = "true" if ready else "false"
    return SLICE.format(name=name or f"{engine}-a", engine=engine, port=port, address=address, ready=state)


def kubernetes_gateway_env(kubeconfig: Path, namespace: str) -> dict[str, str]:
    """A gateway process discovering the engines of `namespace` on the test API server."""
    return {
        "SAGE_GATEWAY_DISCOVERY": "kubernetes",
        "SAGE_GATEWAY_KUBECONFIG": str(kubeconfig),
        "SAGE_GATEWAY_NAMESPACES": namespace,
    }
