"""What the operator gives each engine beside its Deployment and Service, as a real process on the
real kube-apiserver: the pods' own account, NetworkPolicy and disruption budget; the adapter list
a starting pod loads; the adapter routes' credential, which a real engine process checks while the
operator loads an adapter into it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx

from sage_harness.engines import EngineProcess
from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.waiting import wait_until
from sage_testing.engine_objects import (
    ENGINE,
    apply_engine,
    engine_pods,
    engine_status,
    get,
    must_get,
    set_pod_status,
    the_pod,
    wait_phase,
)
from sage_testing.plugin import ENGINE_PEERS


def test_engine_pods_are_fenced_in(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    """An account of their own with no token, and a NetworkPolicy admitting only the configured
    peers (the chart's gateway and operator) to the engine port."""
    apply_engine(kubectl, namespace, "fenced")
    account = wait_until(lambda: get(kubectl, namespace, "serviceaccount", "fenced-engine"), "the ServiceAccount")
    policy = wait_until(lambda: get(kubectl, namespace, "networkpolicy", "fenced"), "the NetworkPolicy")
    deployment = must_get(kubectl, namespace, "deployment", "fenced")
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "fenced-engine"
    assert pod_spec["automountServiceAccountToken"] is False
    assert account["automountServiceAccountToken"] is False
    assert policy["spec"]["podSelector"] == {"matchLabels": {"sage.ai/engine": "fenced"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == ENGINE_PEERS
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    budget = wait_until(lambda: get(kubectl, namespace, "poddisruptionbudget", "fenced"), "the disruption budget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"sage.ai/engine": "fenced"}}}
    (spread,) = pod_spec["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"]) == ("kubernetes.io/hostname", "ScheduleAnyway")
    pod = wait_until(lambda: engine_pods(kubectl, namespace, "fenced"), "a pod")[0]
    assert pod["spec"]["serviceAccountName"] == "fenced-engine"
    assert "volumes" not in pod["spec"] or all("projected" not in v for v in pod["spec"]["volumes"])


# Its own model name: the name-conflict tests (another module) claim "chat" in other namespaces.
def test_static_adapters_are_loaded_into_ready_pods(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, engine_port: int, tmp_path: Path
) -> None:
    manifest = ENGINE.format(name="adapted", backend="deterministic", kind="llm", replicas=1) + (
        "  adapters: [{name: support-bot, source: pvc://adapters/support-bot}]\n"
    )
    kubectl.apply(manifest, namespace)
    deployment = wait_until(lambda: get(kubectl, namespace, "deployment", "adapted"), "the Deployment")
    pod_spec = deployment["spec"]["template"]["spec"]
    mounts = pod_spec["containers"][0]["volumeMounts"]
    assert {"name": "pvc-0", "mountPath": "/adapters/adapters", "readOnly": True} in mounts
    # What a starting pod loads before it turns ready: a ConfigMap (a new adapter rolls no pod).
    listed = wait_until(lambda: get(kubectl, namespace, "configmap", "adapted-adapters"), "the adapter list")
    assert json.loads(listed["data"]["adapters.json"]) == {"support-bot": "/adapters/adapters/support-bot"}
    assert {"name": "adapter-list", "mountPath": "/etc/sage/adapters", "readOnly": True} in mounts
    # The adapter routes' credential: a Secret the operator created, mounted where the engine reads it.
    (admin,) = [volume for volume in pod_spec["volumes"] if volume["name"] == "admin"]
    secret = must_get(kubectl, namespace, "secret", admin["secret"]["secretName"])
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "LLMEngine"
    token_file = tmp_path / "token"
    token_file.write_bytes(base64.b64decode(secret["data"]["token"]))
    env = {item["name"]: item.get("value") for item in pod_spec["containers"][0]["env"]}
    assert env["SAGE_ENGINE_ADMIN_TOKEN_FILE"] == "/var/run/sage/admin/token"
    assert {"name": "admin", "mountPath": "/var/run/sage/admin", "readOnly": True} in mounts
    pod = the_pod(kubectl, namespace, "adapted")
    engine = EngineProcess(
        "deterministic",
        "deterministic",
        served_model_name="adapted",
        port=engine_port,
        env={"SAGE_ENGINE_ADMIN_TOKEN_FILE": str(token_file)},
    )
    try:
        # The pod reports ready before its server answers: the operator's first attempts fail and
        # back off; once the engine is up the adapter gets loaded.
        set_pod_status(kubectl, namespace, pod, ready=True)
        wait_phase(kubectl, namespace, "adapted", "Ready")
        assert engine_status(kubectl, namespace, "adapted")["servedModels"] == ["adapted"]
        engine.start()
        wait_until(lambda: "support-bot" in served_ids(engine), "the adapter loaded into the engine")
        wait_until(
            lambda: engine_status(kubectl, namespace, "adapted")["servedModels"] == ["adapted", "support-bot"],
            "the adapter in servedModels",
        )
        # The container restarts (a new process, a new log): its adapters are gone until the
        # operator loads them again.
        loaded = "loaded LoRA adapter 'support-bot' from /adapters/adapters/support-bot"
        assert loaded in engine.log()
        engine.stop()
        engine.start()
        set_pod_status(kubectl, namespace, pod, ready=True, restarts=1)
        wait_until(lambda: loaded in engine.log(since_launch=True), "the adapter reloaded into the restarted engine")
        assert "support-bot" in served_ids(engine)
        anyone = httpx.post(f"{engine.base_url}/v1/unload_lora_adapter", json={"lora_name": "support-bot"})
        assert anyone.status_code == 401  # only the operator's token changes what the engine serves
    finally:
        engine.stop()


def served_ids(engine: EngineProcess) -> set[str]:
    return {model["id"] for model in httpx.get(f"{engine.base_url}/v1/models").json()["data"]}
