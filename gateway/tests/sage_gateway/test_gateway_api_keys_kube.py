"""API keys as APIKey objects on a real API server, created and revoked with kubectl, as a user
does: a new key works and a deleted one stops without a restart; a key bound to one namespace
cannot reach (or learn the names of) another namespace's models."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from sage_api.apikey import key_hash, new_key
from sage_harness.controlplane import ControlPlane
from sage_harness.gateway import GatewayProcess
from sage_harness.kubectl import Kubectl
from sage_harness.waiting import wait_until

ENGINE = """\
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}}}
spec: {{model: deterministic, backend: deterministic}}
"""
APIKEY = """\
apiVersion: sage.ai/v1alpha1
kind: APIKey
metadata: {{name: {name}}}
spec: {{keyHash: "{hash}", namespaces: [{namespaces}]}}
"""


@pytest.fixture
def tenants(namespace: str, extra_namespace: Callable[[str], str]) -> tuple[str, str]:
    """Two engine namespaces: the test's own and a second one."""
    return namespace, extra_namespace("other")


@pytest.fixture
def keys_namespace(extra_namespace: Callable[[str], str]) -> str:
    return extra_namespace("keys")


@pytest.fixture
def gateway(control_plane: ControlPlane, tenants: tuple[str, str], keys_namespace: str) -> Iterator[GatewayProcess]:
    env = {
        "SAGE_GATEWAY_DISCOVERY": "kubernetes",
        "SAGE_GATEWAY_KUBECONFIG": str(control_plane.kubeconfig),
        "SAGE_GATEWAY_NAMESPACES": ",".join(tenants),
        "SAGE_GATEWAY_AUTH": "api-keys",
        "SAGE_GATEWAY_API_KEYS_NAMESPACE": keys_namespace,
    }
    with GatewayProcess(env=env) as process:
        yield process


def status(gateway: GatewayProcess, key: str, model: str = "") -> int:
    headers = {"authorization": f"Bearer {key}"}
    if not model:
        return httpx.get(f"{gateway.base_url}/v1/models", headers=headers).status_code
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers=headers).status_code


def seconds_until(condition: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    wait_until(condition, what, timeout=30, interval=0.02)
    return time.monotonic() - started


def test_keys_created_and_revoked_with_kubectl_take_effect_without_a_restart(
    gateway: GatewayProcess, kubectl: Kubectl, keys_namespace: str, tenants: tuple[str, str]
) -> None:
    key = new_key()
    assert status(gateway, key) == 401
    kubectl.apply(APIKEY.format(name="alice", hash=key_hash(key), namespaces=tenants[0]), keys_namespace)
    accepted = seconds_until(lambda: status(gateway, key) == 200, "the new key accepted")
    kubectl("delete", "apikey", "alice", "-n", keys_namespace)
    revoked = seconds_until(lambda: status(gateway, key) == 401, "the deleted key refused")
    # Informational (no timing assertions): how soon after kubectl returned the change held.
    print(f"key accepted {accepted:.3f}s after kubectl apply, refused {revoked:.3f}s after kubectl delete")
    assert gateway.process is not None
    assert gateway.process.poll() is None  # the same process throughout


def test_a_key_reaches_only_its_namespace_and_learns_no_other_names(
    gateway: GatewayProcess, kubectl: Kubectl, keys_namespace: str, tenants: tuple[str, str]
) -> None:
    mine, theirs = tenants
    kubectl.apply(ENGINE.format(name="ours"), mine)
    kubectl.apply(ENGINE.format(name="private-model"), theirs)
    key, admin = new_key(), new_key()
    kubectl.apply(APIKEY.format(name="team", hash=key_hash(key), namespaces=mine), keys_namespace)
    kubectl.apply(APIKEY.format(name="admin", hash=key_hash(admin), namespaces=f"{mine}, {theirs}"), keys_namespace)
    wait_until(lambda: status(gateway, admin, "private-model") == 503, "both engines known (no replicas: 503)")
    wait_until(lambda: status(gateway, key) == 200, "the team key accepted")
    assert status(gateway, key, "ours") == 503  # its own model: known, not ready yet
    assert status(gateway, key, "private-model") == 404  # the other tenant's: as if it did not exist
    body = {"model": "private-model", "input": "x"}
    headers = {"authorization": f"Bearer {key}"}
    refused = httpx.post(f"{gateway.base_url}/v1/embeddings", json=body, headers=headers).json()
    assert refused["error"]["code"] == "model_not_found"
    unknown = httpx.post(f"{gateway.base_url}/v1/embeddings", json={**body, "model": "nope"}, headers=headers).json()
    assert refused["error"]["message"].replace("private-model", "X") == unknown["error"]["message"].replace("nope", "X")
