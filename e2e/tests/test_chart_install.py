"""`helm install` of the chart with the real helm binary into the real kube-apiserver: every
rendered object is accepted, the API server's own authorizer confirms the RBAC grants, and
`helm uninstall` removes everything but the CRDs."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sage_harness.controlplane import ControlPlane
from sage_harness.helm import ALL_OPTIONS, CHART, Helm
from sage_harness.kubectl import Kubectl
from sage_harness.waiting import WaitTimeout, wait_until

_counter = itertools.count(1)


@pytest.fixture(scope="module")
def helm(kube_binaries: Path, control_plane: ControlPlane) -> Helm:
    return Helm(kube_binaries / "helm", kubeconfig=control_plane.kubeconfig)


@pytest.fixture
def release_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A namespace name that `helm install --create-namespace` creates; deleted afterwards."""
    name = f"sage-system-{next(_counter)}"
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def resource_of(obj: dict[str, Any]) -> str:
    """`kind.group` as kubectl accepts it."""
    group = obj["apiVersion"].rpartition("/")[0]
    return f"{obj['kind'].lower()}.{group}" if group else obj["kind"].lower()


def get(kubectl: Kubectl, obj: dict[str, Any]) -> Any:
    namespace = obj["metadata"].get("namespace")
    scope = ["-n", namespace] if namespace else []
    return kubectl.json("get", resource_of(obj), obj["metadata"]["name"], *scope)


def absent(kubectl: Kubectl, obj: dict[str, Any]) -> bool:
    namespace = obj["metadata"].get("namespace")
    scope = ["-n", namespace] if namespace else []
    found = kubectl("get", resource_of(obj), obj["metadata"]["name"], *scope, "--ignore-not-found", "-o", "name")
    return found.strip() == ""


def can(kubectl: Kubectl, account: str, verb: str, resource: str, namespace: str | None) -> bool:
    """The API server's answer to `kubectl auth can-i` (namespace None: a cluster-scoped resource)."""
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    result = kubectl.run("auth", "can-i", verb, resource, *scope, f"--as={account}", check=False)
    assert "arning" not in result.stderr, result.stderr  # an unknown resource would read as a "no"
    return result.stdout.strip() == "yes"


def run_notes_apply_command(notes: str, kubectl: Kubectl) -> None:
    """Runs the NOTES' `kubectl apply` command with bash, as a user pasting it would."""
    lines = notes.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("kubectl apply"))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("'"))
    command = "\n".join(lines[start : end + 1])
    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig), "PATH": f"{kubectl.binary.parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, f"{command}\n{result.stderr}"


def test_install_is_accepted_and_uninstall_cleans_up(helm: Helm, kubectl: Kubectl, release_namespace: str) -> None:
    out = helm.install("sage", release_namespace, "--wait=false")
    assert "STATUS: deployed" in out
    assert "kubectl port-forward" in out  # NOTES tell how to reach the gateway
    run_notes_apply_command(out, kubectl)  # ... and give a first engine to apply, which works
    kubectl("get", "llmengine", "minilm", "-n", release_namespace)
    objects = helm.manifest("sage", release_namespace)
    assert {o["kind"] for o in objects} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "Secret",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",  # the operator's leader Lease
        "RoleBinding",
    }
    for obj in objects:
        live = get(kubectl, obj)
        assert live["metadata"]["labels"]["app.kubernetes.io/instance"] == "sage"
    # The API server's authorizer agrees with the rendered rules.
    operator = f"system:serviceaccount:{release_namespace}:sage-operator"
    gateway = f"system:serviceaccount:{release_namespace}:sage-gateway"
    elsewhere = "default"
    assert can(kubectl, operator, "patch", "llmengines.sage.ai/status", elsewhere)
    assert can(kubectl, operator, "create", "deployments.apps", elsewhere)
    assert can(kubectl, operator, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)
    assert can(kubectl, operator, "create", "secrets", elsewhere)  # the engines' credentials
    for verb in ("get", "list", "watch", "patch"):  # but never one back
        assert not can(kubectl, operator, verb, "secrets", elsewhere)
    assert not can(kubectl, operator, "create", "pods", elsewhere)
    assert not can(kubectl, operator, "delete", "llmengines.sage.ai", elsewhere)
    assert can(kubectl, operator, "patch", "leases.coordination.k8s.io/sage-operator-leader", release_namespace)
    assert not can(kubectl, operator, "patch", "leases.coordination.k8s.io/kube-scheduler", release_namespace)
    assert not can(kubectl, operator, "create", "leases.coordination.k8s.io", elsewhere)
    assert can(kubectl, gateway, "watch", "endpointslices.discovery.k8s.io", elsewhere)
    assert can(kubectl, gateway, "list", "llmengines.sage.ai", elsewhere)
    assert not can(kubectl, gateway, "patch", "llmengines.sage.ai", elsewhere)
    assert not can(kubectl, gateway, "list", "pods", elsewhere)

    helm("uninstall", "sage", "--namespace", release_namespace, "--wait")
    assert [f"{o['kind']}/{o['metadata']['name']}" for o in objects if not absent(kubectl, o)] == []
    # Helm never deletes CRDs: engines survive an uninstall.
    kubectl("get", "crd", "llmengines.sage.ai", "finetunejobs.sage.ai")


def test_namespaced_install_with_every_option(helm: Helm, kubectl: Kubectl, release_namespace: str) -> None:
    """ServiceMonitor is asked for but its API is not served here: the chart leaves it out."""
    team = f"{release_namespace}-team"
    kubectl("create", "namespace", team)
    values = ["-f", str(ALL_OPTIONS), "--set", f"watchNamespaces={{{release_namespace},{team}}}"]
    out = helm.install("sage", release_namespace, "--wait=false", *values)
    assert "does not serve monitoring.coreos.com/v1" in out
    assert "export OPENAI_BASE_URL=https://llm.example.com/v1" in out
    objects = helm.manifest("sage", release_namespace)
    assert "ServiceMonitor" not in {o["kind"] for o in objects}
    assert {"Ingress", "PodDisruptionBudget", "Role", "RoleBinding"} <= {o["kind"] for o in objects}
    for obj in objects:
        assert get(kubectl, obj)["metadata"]["name"] == obj["metadata"]["name"]
    operator = f"system:serviceaccount:{release_namespace}:sage-operator"
    gateway = f"system:serviceaccount:{release_namespace}:sage-gateway"
    for namespace in (release_namespace, team):
        assert can(kubectl, operator, "create", "deployments.apps", namespace)
        assert can(kubectl, operator, "create", "networkpolicies.networking.k8s.io", namespace)
        assert can(kubectl, gateway, "watch", "llmengines.sage.ai", namespace)
    assert not can(kubectl, operator, "create", "deployments.apps", "default")
    assert not can(kubectl, gateway, "watch", "llmengines.sage.ai", "default")
    helm("uninstall", "sage", "--namespace", release_namespace, "--wait")
    assert [f"{o['kind']}/{o['metadata']['name']}" for o in objects if not absent(kubectl, o)] == []
    kubectl.run("delete", "namespace", team, "--wait=false", check=False)


def test_upgrade_between_cluster_and_namespaced_rbac_leaves_nothing_behind(
    helm: Helm, kubectl: Kubectl, release_namespace: str
) -> None:
    helm.install("sage", release_namespace, "--wait=false")
    cluster_wide = helm.manifest("sage", release_namespace)
    helm("upgrade", "sage", str(CHART), "--namespace", release_namespace, "--set", "rbac.namespaced=true")
    namespaced = helm.manifest("sage", release_namespace)

    def admin_key(manifest: list[dict[str, Any]]) -> str:
        (secret,) = [o for o in manifest if o["kind"] == "Secret"]
        return str(secret["data"]["key"])

    assert admin_key(namespaced) == admin_key(cluster_wide)  # a new key would roll every engine
    gone = [o for o in cluster_wide if (o["kind"], o["metadata"]["name"]) not in {
        (n["kind"], n["metadata"]["name"]) for n in namespaced
    }]  # fmt: skip
    assert {o["kind"] for o in gone} == {"ClusterRole", "ClusterRoleBinding"}
    assert [o["metadata"]["name"] for o in gone if not absent(kubectl, o)] == []
    account = f"system:serviceaccount:{release_namespace}:sage-operator"
    assert can(kubectl, account, "create", "deployments.apps", release_namespace)
    assert not can(kubectl, account, "create", "deployments.apps", "default")
    helm("upgrade", "sage", str(CHART), "--namespace", release_namespace, "--set", "rbac.namespaced=false")
    assert can(kubectl, account, "create", "deployments.apps", "default")
    helm("uninstall", "sage", "--namespace", release_namespace, "--wait")
    assert [o["metadata"]["name"] for o in cluster_wide + namespaced if not absent(kubectl, o)] == []


def test_pods_are_admitted_under_the_restricted_pod_security_standard(
    helm: Helm, kubectl: Kubectl, release_namespace: str
) -> None:
    """The API server's PodSecurity admission, enforcing `restricted`, admits the pods the
    ReplicaSet controller creates for both Deployments (they stay Pending: no kubelet here)."""
    kubectl("create", "namespace", release_namespace)
    kubectl("label", "namespace", release_namespace, "pod-security.kubernetes.io/enforce=restricted")
    helm("install", "sage", str(CHART), "--namespace", release_namespace, "--wait=false")

    def pods_by_component() -> dict[str, int] | None:
        pods = kubectl.json("get", "pods", "-n", release_namespace)["items"]
        counts: dict[str, int] = {}
        for pod in pods:
            component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
            counts[component] = counts.get(component, 0) + 1
        return counts if counts == {"operator": 1, "gateway": 2} else None

    def rejections() -> str:
        events = kubectl.json("get", "events", "-n", release_namespace, "--field-selector", "reason=FailedCreate")
        return "\n".join(e["message"] for e in events["items"])

    try:
        wait_until(pods_by_component, "the ReplicaSets' pods to be admitted", 60)
    except WaitTimeout as timeout:
        raise AssertionError(f"{timeout}\nrejections:\n{rejections()}") from timeout
    assert rejections() == ""
    helm("uninstall", "sage", "--namespace", release_namespace, "--wait")
