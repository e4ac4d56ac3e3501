"""The chart's RBAC is least privilege: exactly the API calls each component makes, no wildcard,
read-only for the gateway, and confined to the watched namespaces when `rbac.namespaced` is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sage_harness.helm import ALL_OPTIONS, Helm

Rules = set[tuple[str, str, str]]  # (apiGroup, resource, verb)

# What the operator's code does with the API (sage_operator through sage_kube, and kopf's watches),
# and nothing more. A missing child is created (and read when one of its name exists already:
# never taken over); server-side apply keeps it.
APPLY = ("get", "list", "watch", "create", "patch")
OPERATOR_NAMESPACED: Rules = {
    *{("sage.ai", "llmengines", v) for v in ("get", "list", "watch", "patch")},
    *{("sage.ai", "finetunejobs", v) for v in ("get", "list", "watch")},
    ("sage.ai", "llmengines/status", "patch"),
    ("sage.ai", "llmengines/scale", "patch"),  # the autoscaler
    ("sage.ai", "finetunejobs/status", "get"),
    ("sage.ai", "finetunejobs/status", "patch"),
    *{("apps", "deployments", v) for v in APPLY},
    *{("networking.k8s.io", "networkpolicies", v) for v in APPLY},
    *{("policy", "poddisruptionbudgets", v) for v in APPLY},
    *{("", "configmaps", v) for v in APPLY},
    ("", "secrets", "create"),
    *{("", "services", v) for v in APPLY},
    *{("batch", "jobs", v) for v in APPLY},
    *{("", "serviceaccounts", v) for v in APPLY},
    *{("rbac.authorization.k8s.io", kind, v) for kind in ("roles", "rolebindings") for v in APPLY},
    *{("", "pods", v) for v in ("list", "watch")},
    ("", "events", "create"),
}
OPERATOR_CRDS: Rules = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")}
OPERATOR_NAMESPACES: Rules = {("", "namespaces", v) for v in ("get", "list", "watch")}
GATEWAY: Rules = {
    *{("sage.ai", "llmengines", v) for v in ("get", "list", "watch")},
    *{("sage.ai", "llmengines/scale", v) for v in ("get", "patch")},  # scale from zero, and nothing else
    *{("discovery.k8s.io", "endpointslices", v) for v in ("get", "list", "watch")},
}
READ = {"get", "list", "watch"}
LEADER_ELECTION = "-leader-election"


@pytest.fixture(scope="module")
def helm(kube_binaries: Path) -> Helm:
    return Helm(kube_binaries / "helm")


def expand(role: dict[str, Any]) -> Rules:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def roles(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    """The component's roles for the resources it manages (the operator's leader Lease apart)."""
    return [
        o
        for o in objects
        if o["kind"] in {"Role", "ClusterRole"}
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
        and not o["metadata"]["name"].endswith(LEADER_ELECTION)
    ]


def test_the_operator_may_hold_its_own_lease_and_touch_no_other(helm: Helm) -> None:
    """Operator replicas elect the one that acts on a Lease in the release namespace: the operator
    may create a Lease, and read and renew only the one the chart names."""
    objects = helm.template(namespace="ml")
    (role,) = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith(LEADER_ELECTION)]
    assert role["metadata"]["namespace"] == "ml"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["sage-operator-leader"],
            "verbs": ["get", "patch"],
        },
    ]
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sage-operator", "namespace": "ml"}]
    (operator,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "sage-operator"]
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SAGE_OPERATOR_LEADER_LEASE"]["value"] == "ml/sage-operator-leader"
    assert env["SAGE_OPERATOR_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize(
    "values",
    [[], ["-f", str(ALL_OPTIONS)], ["--set", "rbac.namespaced=true,rbac.clusterDiscovery=false"]],
    ids=["cluster", "namespaced", "namespaced-without-crd-discovery"],
)
def test_no_wildcards_and_no_secret_reads(helm: Helm, values: list[str]) -> None:
    """Secrets: `create` only (the engines' credentials), never a verb that returns one's content
    (get, list, watch, and patch, whose answer is the object)."""
    for obj in helm.template(*values):
        if obj["kind"] not in {"Role", "ClusterRole"}:
            continue
        for rule in obj["rules"]:
            assert "nonResourceURLs" not in rule
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{obj['metadata']['name']}: wildcard in {field}"
            if "secrets" in rule["resources"]:
                assert (rule["resources"], rule["verbs"]) == (["secrets"], ["create"])
            assert not {"escalate", "bind", "impersonate", "update", "delete", "deletecollection"} & set(rule["verbs"])


def test_cluster_install_grants_exactly_what_is_used(helm: Helm) -> None:
    objects = helm.template()
    (operator,) = roles(objects, "operator")
    assert operator["kind"] == "ClusterRole"
    assert expand(operator) == OPERATOR_NAMESPACED | OPERATOR_CRDS
    (gateway,) = roles(objects, "gateway")
    assert expand(gateway) == GATEWAY


def test_a_namespace_list_lets_kopf_follow_namespaces(helm: Helm) -> None:
    (operator,) = roles(helm.template("--set", "watchNamespaces={ml}"), "operator")
    assert operator["kind"] == "ClusterRole"
    assert expand(operator) == OPERATOR_NAMESPACED | OPERATOR_CRDS | OPERATOR_NAMESPACES


def test_gateway_writes_nothing_but_an_engines_scale(helm: Helm) -> None:
    for values in ([], ["-f", str(ALL_OPTIONS)]):
        rules = {rule for role in roles(helm.template(*values), "gateway") for rule in expand(role)}
        assert {(resource, verb) for _, resource, verb in rules if verb not in READ} == {("llmengines/scale", "patch")}


def test_namespaced_install_uses_roles_in_each_watched_namespace(helm: Helm) -> None:
    objects = helm.template("-f", str(ALL_OPTIONS))
    operator_roles = roles(objects, "operator")
    by_namespace = {r["metadata"].get("namespace"): r for r in operator_roles}
    assert set(by_namespace) == {"sage-system", "ml-team", None}
    assert by_namespace[None]["kind"] == "ClusterRole"
    assert expand(by_namespace[None]) == OPERATOR_CRDS | OPERATOR_NAMESPACES
    for namespace in ("sage-system", "ml-team"):
        assert by_namespace[namespace]["kind"] == "Role"
        assert expand(by_namespace[namespace]) == OPERATOR_NAMESPACED
    gateway_roles = roles(objects, "gateway")
    assert {r["kind"] for r in gateway_roles} == {"Role"}
    assert {r["metadata"]["namespace"] for r in gateway_roles} == {"sage-system", "ml-team"}
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    keys = [b for b in bindings if b["roleRef"]["name"] == "sage-gateway-keys"]
    assert len(bindings) == 6  # operator and gateway in each namespace, the key reader and the leader Lease
    (key_reader,) = keys
    assert key_reader["metadata"]["namespace"] == "sage-system"  # only the release namespace's APIKeys
    for binding in bindings:
        (subject,) = binding["subjects"]
        assert subject["namespace"] == "sage-system"
        suffixes = ("", "-keys", LEADER_ELECTION)
        assert binding["roleRef"]["name"] in {subject["name"] + suffix for suffix in suffixes}


def test_namespaced_install_defaults_to_the_release_namespace(helm: Helm) -> None:
    objects = helm.template("--set", "rbac.namespaced=true,rbac.clusterDiscovery=false", namespace="ml")
    assert {o["kind"] for o in objects if "Cluster" in o["kind"]} == set()
    assert {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"} == {"ml"}


def test_releases_in_two_namespaces_do_not_share_cluster_roles(helm: Helm) -> None:
    def cluster_names(namespace: str) -> set[str]:
        return {o["metadata"]["name"] for o in helm.template(namespace=namespace) if "Cluster" in o["kind"]}

    assert cluster_names("a").isdisjoint(cluster_names("b"))
