"""The chart's tenancy and isolation options, rendered by the real `helm` binary: API keys (with
an Ingress, by default), Redis for shared limits, the operator's admin key, the peers every
engine's NetworkPolicy admits, and model names shared across namespaces."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sage_harness.helm import Helm, env_of, find, one


@pytest.fixture(scope="module")
def helm(kube_binaries: Path) -> Helm:
    return Helm(kube_binaries / "helm")


def test_redis_shares_limits_with_its_password_from_a_secret(helm: Helm) -> None:
    objects = helm.template(
        "--set", "gateway.auth.mode=apiKeys", "--set", "gateway.redis.url=redis://redis:6379/0",
        "--set", "gateway.redis.passwordSecret=redis-auth",
    )  # fmt: skip
    (container,) = one(objects, "Deployment", "sage-gateway")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SAGE_GATEWAY_REDIS_URL"]["value"] == "redis://redis:6379/0"
    assert env["SAGE_GATEWAY_REDIS_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "redis-auth", "key": "password"}
    }
    assert "SAGE_GATEWAY_REDIS_URL" not in env_of(one(helm.template(), "Deployment", "sage-gateway"))


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        ([], "none"),
        (["--set", "gateway.ingress.enabled=true"], "api-keys"),
        (["--set", "gateway.ingress.enabled=true", "--set", "gateway.auth.mode=none"], "none"),
        (["--set", "gateway.auth.mode=apiKeys"], "api-keys"),
    ],
    ids=["no-ingress", "ingress", "ingress-opted-out", "explicit"],
)
def test_api_keys_are_required_whenever_the_ingress_is_on_unless_opted_out(
    helm: Helm, values: list[str], mode: str
) -> None:
    objects = helm.template(*values, namespace="sage-system")
    env = env_of(one(objects, "Deployment", "sage-gateway"))
    assert env["SAGE_GATEWAY_AUTH"] == mode
    roles = find(objects, "Role", "sage-gateway-keys")
    if mode == "none":
        assert roles == []
        return
    assert env["SAGE_GATEWAY_API_KEYS_NAMESPACE"] == "sage-system"
    (role,) = roles
    # Only the key objects of its own namespace, never Secrets (Helm's release records are Secrets).
    assert role["metadata"]["namespace"] == "sage-system"
    assert role["rules"] == [{"apiGroups": ["sage.ai"], "resources": ["apikeys"], "verbs": ["get", "list", "watch"]}]
    gateway_roles = [obj for obj in find(objects, "ClusterRole") if "gateway" in obj["metadata"]["name"]]
    assert gateway_roles
    assert all("secrets" not in rule["resources"] for obj in gateway_roles for rule in obj["rules"])


def test_engine_peers_are_the_releases_gateway_and_operator(helm: Helm) -> None:
    """The operator renders each engine's NetworkPolicy (operator/.../isolation.py) from these."""
    objects = helm.template("--set-json", 'networkPolicy.extraFrom=[{"ipBlock": {"cidr": "10.9.0.0/16"}}]')
    peers = json.loads(env_of(one(objects, "Deployment", "sage-operator"))["SAGE_OPERATOR_ENGINE_PEERS"])
    pods = {
        name: one(objects, "Deployment", f"sage-{name}")["spec"]["template"]["metadata"]["labels"]
        for name in ("gateway", "operator")
    }
    selected = [peer["podSelector"]["matchLabels"] for peer in peers[:2]]
    assert [next(n for n, labels in pods.items() if sel.items() <= labels.items()) for sel in selected] == [
        "gateway",
        "operator",
    ]
    for peer in peers[:2]:
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "sage-system"}
    assert peers[2:] == [{"ipBlock": {"cidr": "10.9.0.0/16"}}]
    # Engines get theirs from the operator, one per engine in every namespace; the chart's are its own pods'.
    assert sorted(p["metadata"]["name"] for p in find(objects, "NetworkPolicy")) == ["sage-gateway", "sage-operator"]


def test_gateway_and_operator_pods_admit_only_their_serving_port(helm: Helm) -> None:
    objects = helm.template("--set", "gateway.port=9090", "--set", "operator.healthPort=9091")
    for component, port in (("gateway", 9090), ("operator", 9091)):
        policy = one(objects, "NetworkPolicy", f"sage-{component}")
        pod_labels = one(objects, "Deployment", f"sage-{component}")["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": port}]}]
    gateway_labels = one(objects, "Deployment", "sage-gateway")["spec"]["template"]["metadata"]["labels"]
    operator_selector = one(objects, "NetworkPolicy", "sage-operator")["spec"]["podSelector"]["matchLabels"]
    assert not operator_selector.items() <= gateway_labels.items(), "the operator's policy selects gateway pods"
    only_operator = helm.template("--set", "gateway.enabled=false")
    assert [p["metadata"]["name"] for p in find(only_operator, "NetworkPolicy")] == ["sage-operator"]


def test_the_operator_gets_its_admin_key_from_a_secret(helm: Helm) -> None:
    """The key the engines' adapter credentials derive from: the chart's own Secret by default
    (random, 48 characters), or the one the user names; never in the Deployment itself."""

    def key_source(objects: list[dict[str, Any]]) -> dict[str, Any]:
        container = one(objects, "Deployment", "sage-operator")["spec"]["template"]["spec"]["containers"][0]
        (variable,) = [v for v in container["env"] if v["name"] == "SAGE_OPERATOR_ADMIN_KEY"]
        assert "value" not in variable
        reference: dict[str, Any] = variable["valueFrom"]["secretKeyRef"]
        return reference

    objects = helm.template()
    assert key_source(objects) == {"name": "sage-operator-admin-key", "key": "key"}
    secret = one(objects, "Secret", "sage-operator-admin-key")
    assert len(base64.b64decode(secret["data"]["key"])) == 48
    mine = helm.template("--set", "operator.adminKeySecret=my-key")
    assert key_source(mine) == {"name": "my-key", "key": "key"}
    assert find(mine, "Secret") == []


def test_network_policies_can_be_turned_off(helm: Helm) -> None:
    objects = helm.template("--set", "networkPolicy.enabled=false")
    assert "SAGE_OPERATOR_ENGINE_PEERS" not in env_of(one(objects, "Deployment", "sage-operator"))
    assert find(objects, "NetworkPolicy") == []


def test_shared_model_names_reach_both_components(helm: Helm) -> None:
    objects = helm.template("--set", "sharedModelNames={qwen,minilm}")
    assert env_of(one(objects, "Deployment", "sage-operator"))["SAGE_OPERATOR_SHARED_NAMES"] == "qwen,minilm"
    assert env_of(one(objects, "Deployment", "sage-gateway"))["SAGE_GATEWAY_SHARED_NAMES"] == "qwen,minilm"
    defaults = helm.template()
    assert "SAGE_GATEWAY_SHARED_NAMES" not in env_of(one(defaults, "Deployment", "sage-gateway"))
