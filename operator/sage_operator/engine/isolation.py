"""What keeps an engine's pods to themselves and its service up (pure): a ServiceAccount of their
own, with no token mounted (an engine never calls the Kubernetes API); a NetworkPolicy that admits
only the peers the operator is told of (the gateway and the operator of the release) on the
engine port; and a PodDisruptionBudget that lets node drains take one replica at a time."""

from __future__ import annotations

from typing import Any

from sage_api.engine import LLMEngine
from sage_api.ports import SagePorts
from sage_operator.core.kinds import ENGINE_OWNER
from sage_operator.core.metadata import child_metadata
from sage_operator.engine.render import engine_account_name, selector_labels


def render_engine_account(engine: LLMEngine) -> dict[str, Any]:
    name = engine_account_name(engine.metadata["name"])
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(ENGINE_OWNER, engine.metadata, name),
        "automountServiceAccountToken": False,
    }


def render_engine_network_policy(engine: LLMEngine, peers: list[dict[str, Any]]) -> dict[str, Any]:
    """Ingress to the engine's pods on the engine port from `peers` (NetworkPolicyPeer objects)
    only; every other port of the pods, and everything from anyone else, is refused."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(ENGINE_OWNER, engine.metadata),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(engine.metadata["name"])},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": SagePorts.ENGINE}]}],
        },
    }


def render_engine_disruption_budget(engine: LLMEngine) -> dict[str, Any]:
    """At most one replica evicted at a time by voluntary disruptions (node drains, autoscaler).
    `maxUnavailable`, not `minAvailable`: a single-replica engine never blocks a drain."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(ENGINE_OWNER, engine.metadata),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(engine.metadata["name"])}},
    }
