"""The operator as a real process against a real kube-apiserver (+ controller-manager: garbage
collector, Deployment and ReplicaSet controllers). Pods never run (no kubelet): tests play the
kubelet by patching pod status, and a real engine process on loopback plays a ready pod's container
(the pod's IP is 127.0.0.1 and the operator is told the engine's port)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx

from sage_harness.engines import EngineProcess
from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.waiting import wait_until
from sage_testing.kubelet import report_pod_ready
from sage_testing.plugin import ENGINE_PEERS

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


def test_engine_gets_its_deployment_and_service(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    apply_engine(kubectl, namespace, "echo")
    deployment = wait_until(lambda: get(kubectl, namespace, "deployment", "echo"), "the Deployment")
    service = wait_until(lambda: get(kubectl, namespace, "service", "echo"), "the Service")
    engine = get(kubectl, namespace, "llmengine", "echo")
    assert engine is not None
    for child in (deployment, service):
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "sage-operator"
        assert labels["sage.ai/engine"] == "echo"
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("LLMEngine", engine["metadata"]["uid"], True)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:7] == [
        "python",
        "-m",
        "sage_engine",
        "--backend",
        "deterministic",
        "--model",
        "deterministic",
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"  # alive though busy or loading
    # Stopping: endpoints drop the pod during the preStop sleep, then the engine drains in its grace period.
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 5 + float(env["SAGE_ENGINE_DRAIN_SECONDS"])
    assert service["spec"]["selector"] == {"sage.ai/engine": "echo"}
    assert service["spec"]["ports"][0]["port"] == 8000
    status = wait_phase(kubectl, namespace, "echo", "Deploying")  # no scheduler: pods stay unscheduled
    assert status["backend"] == "deterministic"
    assert status["endpoint"] == f"http://echo.{namespace}.svc:8000"
    assert status["selector"] == "sage.ai/engine=echo"


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


def test_readiness_drives_deploying_loading_ready(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    apply_engine(kubectl, namespace, "chat")
    wait_phase(kubectl, namespace, "chat", "Deploying")
    pod = the_pod(kubectl, namespace, "chat")
    set_pod_status(kubectl, namespace, pod, ready=False)
    loading = wait_phase(kubectl, namespace, "chat", "Loading")
    set_pod_status(kubectl, namespace, pod, ready=True)
    ready = wait_phase(kubectl, namespace, "chat", "Ready")
    assert (ready["readyReplicas"], ready["ready"]) == (1, "1/1")
    conditions = {c["type"]: c for c in ready["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["lastTransitionTime"] >= loading["conditions"][0]["lastTransitionTime"]
    table = kubectl("get", "llmengines", "-n", namespace)
    row = next(line.split() for line in table.splitlines() if line.startswith("chat "))
    assert "1/1" in row
    assert "Ready" in row
    wait_until(lambda: "Ready" in event_reasons(kubectl, namespace, "chat"), "the Ready event")
    assert sorted(event_reasons(kubectl, namespace, "chat")) == ["Deploying", "Loading", "Ready"]


def test_spec_change_rolls_once_and_scale_reaches_the_deployment(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_engine(kubectl, namespace, "roll")
    wait_phase(kubectl, namespace, "roll", "Deploying")
    before = wait_until(lambda: get(kubectl, namespace, "deployment", "roll"), "the Deployment")
    kubectl(
        "patch",
        "llmengine",
        "roll",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"args": ["--max-batch-items", "8"]}}',
    )
    engine_generation = must_get(kubectl, namespace, "llmengine", "roll")["metadata"]["generation"]
    wait_until(
        lambda: engine_status(kubectl, namespace, "roll").get("observedGeneration") == engine_generation,
        "the new generation observed",
    )
    after = get(kubectl, namespace, "deployment", "roll")
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1  # the template changed once
    assert after["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == ["--max-batch-items", "8"]
    old_hash = before["spec"]["template"]["metadata"]["annotations"]["sage.ai/spec-hash"]
    new_hash = after["spec"]["template"]["metadata"]["annotations"]["sage.ai/spec-hash"]
    assert old_hash != new_hash
    kubectl("scale", "llmengine/roll", "-n", namespace, "--replicas=3")
    scaled = wait_until(
        lambda: (d := get(kubectl, namespace, "deployment", "roll")) and d["spec"]["replicas"] == 3 and d, "3 replicas"
    )
    assert scaled["spec"]["template"]["metadata"]["annotations"]["sage.ai/spec-hash"] == new_hash
    assert scaled["metadata"]["generation"] == after["metadata"]["generation"] + 1
    kubectl("scale", "llmengine/roll", "-n", namespace, "--replicas=0")
    paused = wait_phase(kubectl, namespace, "roll", "Paused")
    assert paused["ready"] == "0/0"
    assert must_get(kubectl, namespace, "deployment", "roll")["spec"]["replicas"] == 0


def test_drift_is_undone(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    apply_engine(kubectl, namespace, "drift")
    first = wait_until(lambda: get(kubectl, namespace, "deployment", "drift"), "the Deployment")
    wait_until(lambda: get(kubectl, namespace, "service", "drift"), "the Service")
    kubectl("delete", "deployment", "drift", "-n", namespace)
    wait_until(
        lambda: (
            (d := get(kubectl, namespace, "deployment", "drift")) and d["metadata"]["uid"] != first["metadata"]["uid"]
        ),
        "the Deployment to come back",
    )
    kubectl(
        "patch",
        "service",
        "drift",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"selector": {"sage.ai/engine": "other"}}}',
    )
    kubectl("set", "image", "deployment/drift", "-n", namespace, "engine=hand/edited:1")
    wait_until(
        lambda: must_get(kubectl, namespace, "service", "drift")["spec"]["selector"] == {"sage.ai/engine": "drift"},
        "the selector restored",
    )
    wait_until(
        lambda: (
            must_get(kubectl, namespace, "deployment", "drift")["spec"]["template"]["spec"]["containers"][0]["image"]
            != "hand/edited:1"
        ),
        "the image restored",
    )


def test_deleting_the_engine_leaves_nothing(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    apply_engine(kubectl, namespace, "gone")
    wait_until(lambda: get(kubectl, namespace, "deployment", "gone"), "the Deployment")
    wait_until(lambda: get(kubectl, namespace, "service", "gone"), "the Service")
    the_pod(kubectl, namespace, "gone")
    kubectl("delete", "llmengine", "gone", "-n", namespace)
    wait_until(lambda: get(kubectl, namespace, "deployment", "gone") is None, "the Deployment to be collected")
    wait_until(lambda: get(kubectl, namespace, "service", "gone") is None, "the Service to be collected")
    wait_until(lambda: get(kubectl, namespace, "serviceaccount", "gone-engine") is None, "the account to be collected")
    wait_until(lambda: get(kubectl, namespace, "networkpolicy", "gone") is None, "the policy to be collected")
    wait_until(lambda: get(kubectl, namespace, "poddisruptionbudget", "gone") is None, "the budget to be collected")
    wait_until(lambda: not engine_pods(kubectl, namespace, "gone"), "the pods to be collected")


def test_crash_loop_is_failed_with_the_termination_message(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_engine(kubectl, namespace, "crash")
    pod = the_pod(kubectl, namespace, "crash")
    crashing = {
        "name": "engine",
        "image": "sage/engine",
        "imageID": "",
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
        "lastState": {
            "terminated": {"exitCode": 1, "reason": "Error", "message": "cannot load model: no such folder /models/x"}
        },
    }
    set_pod_status(kubectl, namespace, pod, ready=False, containers=[crashing])
    status = wait_phase(kubectl, namespace, "crash", "Failed")
    assert "cannot load model: no such folder /models/x" in status["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CrashLoopBackOff")
    wait_until(lambda: "CrashLoopBackOff" in event_reasons(kubectl, namespace, "crash"), "a CrashLoopBackOff event")


def test_invalid_spec_fails_while_other_engines_reconcile(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    # An adapter named like the engine itself: valid to the schema, but no engine can serve both.
    bad = ENGINE.format(name="bad", backend="deterministic", kind="llm", replicas=1)
    kubectl.apply(bad.rstrip() + "\n  adapters: [{name: bad, source: 'hf://org/a'}]\n", namespace)
    apply_engine(kubectl, namespace, "good")
    status = wait_phase(kubectl, namespace, "bad", "Failed")
    assert status["message"].startswith("spec.adapters[0].name:")
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["reason"] == "InvalidSpec"
    wait_until(lambda: get(kubectl, namespace, "deployment", "good"), "the good engine's Deployment")
    wait_phase(kubectl, namespace, "good", "Deploying")
    assert get(kubectl, namespace, "deployment", "bad") is None
    # Fixing the spec is picked up like any change; the broken one was not retried in a loop.
    assert event_reasons(kubectl, namespace, "bad") == ["InvalidSpec"]
    kubectl("patch", "llmengine", "bad", "-n", namespace, "--type=merge", "-p", '{"spec": {"adapters": null}}')
    wait_until(lambda: get(kubectl, namespace, "deployment", "bad"), "the fixed engine's Deployment")


def test_restart_mid_way_keeps_children_and_status(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    apply_engine(kubectl, namespace, "steady")
    pod = the_pod(kubectl, namespace, "steady")
    set_pod_status(kubectl, namespace, pod, ready=False)
    before = wait_phase(kubectl, namespace, "steady", "Loading")
    deployment = get(kubectl, namespace, "deployment", "steady")
    assert deployment is not None
    operator.stop()
    # Drift while no operator runs: the new process corrects it (and so has reconciled this engine).
    kubectl("delete", "service", "steady", "-n", namespace)
    operator.start()
    wait_until(
        lambda: get(kubectl, namespace, "service", "steady"), "the Service restored after the restart", timeout=90
    )
    assert engine_status(kubectl, namespace, "steady") == before
    deployments = kubectl.json("get", "deployments", "-n", namespace, "-l", "sage.ai/engine=steady")["items"]
    assert [d["metadata"]["uid"] for d in deployments] == [deployment["metadata"]["uid"]]
    assert event_reasons(kubectl, namespace, "steady").count("Loading") == 1


def test_static_adapters_are_loaded_into_ready_pods(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, engine_port: int, tmp_path: Path
) -> None:
    manifest = ENGINE.format(name="chat", backend="deterministic", kind="llm", replicas=1) + (
        "  adapters: [{name: support-bot, source: pvc://adapters/support-bot}]\n"
    )
    kubectl.apply(manifest, namespace)
    deployment = wait_until(lambda: get(kubectl, namespace, "deployment", "chat"), "the Deployment")
    pod_spec = deployment["spec"]["template"]["spec"]
    mounts = pod_spec["containers"][0]["volumeMounts"]
    assert {"name": "pvc-0", "mountPath": "/adapters/adapters", "readOnly": True} in mounts
    # What a starting pod loads before it turns ready: a ConfigMap (a new adapter rolls no pod).
    listed = wait_until(lambda: get(kubectl, namespace, "configmap", "chat-adapters"), "the adapter list")
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
    pod = the_pod(kubectl, namespace, "chat")
    engine = EngineProcess(
        "deterministic",
        "deterministic",
        served_model_name="chat",
        port=engine_port,
        env={"SAGE_ENGINE_ADMIN_TOKEN_FILE": str(token_file)},
    )
    try:
        # The pod reports ready before its server answers: the operator's first attempts fail and
        # back off; once the engine is up the adapter gets loaded.
        set_pod_status(kubectl, namespace, pod, ready=True)
        wait_phase(kubectl, namespace, "chat", "Ready")
        assert engine_status(kubectl, namespace, "chat")["servedModels"] == ["chat"]
        engine.start()
        wait_until(lambda: "support-bot" in served_ids(engine), "the adapter loaded into the engine")
        wait_until(
            lambda: engine_status(kubectl, namespace, "chat")["servedModels"] == ["chat", "support-bot"],
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


def test_a_child_the_api_server_refuses_is_reported_not_retried(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    manifest = ENGINE.format(name="picky", backend="deterministic", kind="llm", replicas=1) + (
        "  nodeSelector: {gpu: not a label value}\n"
    )
    kubectl.apply(manifest, namespace)
    status = wait_phase(kubectl, namespace, "picky", "Failed")
    assert "nodeSelector" in status["message"]
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["reason"] == "ChildRejected"
    kubectl("patch", "llmengine", "picky", "-n", namespace, "--type=merge", "-p", '{"spec": {"nodeSelector": null}}')
    wait_until(lambda: get(kubectl, namespace, "deployment", "picky"), "the Deployment once the spec is fixed")
    wait_phase(kubectl, namespace, "picky", "Deploying")
    assert event_reasons(kubectl, namespace, "picky").count("ChildRejected") == 1


def test_some_replicas_ready_is_degraded_with_the_reason(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_engine(kubectl, namespace, "pair", replicas=2)
    wait_until(lambda: len(engine_pods(kubectl, namespace, "pair")) == 2, "two pods")
    first, second = sorted(pod["metadata"]["name"] for pod in engine_pods(kubectl, namespace, "pair"))
    set_pod_status(kubectl, namespace, first, ready=True)
    pulling = {
        "name": "engine",
        "image": "sage/engine",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image sage/engine"}},
    }
    set_pod_status(kubectl, namespace, second, ready=False, containers=[pulling])
    status = wait_phase(kubectl, namespace, "pair", "Degraded")
    assert status["ready"] == "1/2"
    assert "ImagePullBackOff" in status["message"]
    set_pod_status(kubectl, namespace, second, ready=True)
    assert wait_phase(kubectl, namespace, "pair", "Ready")["ready"] == "2/2"


def test_pods_refused_by_a_quota_fail_the_engine_saying_why(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    """The ReplicaSet controller cannot create the pods (here a quota of zero pods; Pod Security
    and other admission refusals look the same): the status says so instead of 'waiting'."""
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}},
    }
    kubectl.apply(json.dumps(quota), namespace)
    wait_until(  # the quota controller has counted what is there: the quota is enforced
        lambda: kubectl.json("get", "resourcequota", "no-pods", "-n", namespace).get("status", {}).get("hard"),
        "the quota to be in force",
    )
    apply_engine(kubectl, namespace, "refused")
    status = wait_phase(kubectl, namespace, "refused", "Failed")
    assert status["conditions"][0]["reason"] == "FailedCreate"
    assert "exceeded quota" in status["message"]
    kubectl("delete", "resourcequota", "no-pods", "-n", namespace)
    wait_until(lambda: engine_pods(kubectl, namespace, "refused"), "the pod once the quota is gone", 60)
    wait_phase(kubectl, namespace, "refused", "Deploying", timeout=90)
