"""The operator as a real process against a real kube-apiserver (+ controller-manager: garbage
collector, Deployment and ReplicaSet controllers). Pods never run (no kubelet): tests play the
kubelet by patching pod status, and a real engine process on loopback plays a ready pod's container
(the pod's IP is 127.0.0.1 and the operator is told the engine's port)."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import httpx

from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.waiting import wait_until
from sage_testing.engine_objects import (
    ENGINE,
    apply_engine,
    engine_pods,
    engine_status,
    event_reasons,
    get,
    must_get,
    set_pod_status,
    the_pod,
    wait_phase,
)


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


def test_an_operator_killed_mid_reconcile_finishes_the_work_once(
    operator: OperatorProcess, kubectl: Kubectl, control_plane: ControlPlane, namespace: str
) -> None:
    """SIGKILL (no shutdown, nothing flushed) while a batch of engines is half reconciled: the next
    process finishes the batch, every engine with its children and its status, one Deployment each.
    The kill comes from a watch, at the first Deployment: the operator keeps up with `kubectl
    apply` itself, so by the time a poll with kubectl sees one the batch is done."""
    names = [f"batch-{n}" for n in range(16)]
    watching, killed = threading.Event(), threading.Event()

    def kill_at_the_first_deployment() -> None:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        with (
            httpx.Client(base_url=control_plane.server, verify=control_plane.ssl_context(), timeout=60) as http,
            http.stream("GET", path, params={"watch": "1", "timeoutSeconds": "60"}) as response,
        ):
            watching.set()  # the API server answers a watch's headers once the watch is in place
            for line in response.iter_lines():
                if json.loads(line).get("type") == "ADDED":
                    operator.signal(signal.SIGKILL)
                    killed.set()
                    return

    watcher = threading.Thread(target=kill_at_the_first_deployment, daemon=True)
    watcher.start()
    assert watching.wait(30), "the watch of Deployments did not start"
    kubectl.apply(
        "\n---\n".join(ENGINE.format(name=name, backend="deterministic", kind="llm", replicas=1) for name in names),
        namespace,
    )
    assert killed.wait(60), "no Deployment was made"
    operator.wait_exit(30)
    operator.stop()  # closes its log; the process is gone already
    half_done = [d["metadata"]["name"] for d in kubectl.json("get", "deployments", "-n", namespace)["items"]]
    operator.start()
    for name in names:
        wait_phase(kubectl, namespace, name, "Deploying", timeout=90)
        assert get(kubectl, namespace, "service", name) is not None, f"{name} has no Service"
    by_engine = [
        d["metadata"]["labels"]["sage.ai/engine"] for d in kubectl.json("get", "deployments", "-n", namespace)["items"]
    ]
    assert sorted(by_engine) == sorted(names), "an engine got no Deployment, or two"
    assert len(half_done) < len(names), "the kill came after the batch was done: it proved nothing"


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


def test_a_webhook_that_cannot_be_called_is_said_in_the_status_and_retried(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    """Admission answers 500 when a webhook it must call is down (a policy engine's pods gone): the
    engine says so instead of waiting silently, and gets its children once the webhook is removed."""
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"unreachable-{namespace}"},
        "webhooks": [{
            "name": "services.unreachable.sage.test",
            "clientConfig": {"url": "https://127.0.0.1:9/validate"},  # nothing listens on the discard port
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["services"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
        }],
    }  # fmt: skip
    kubectl.apply(json.dumps(webhook))
    try:
        apply_engine(kubectl, namespace, "guarded")

        def refused() -> dict[str, Any] | None:
            status = engine_status(kubectl, namespace, "guarded")
            return status if "failed calling webhook" in str(status.get("message")) else None

        status = wait_until(refused, "the webhook's failure in the status")
        assert status["phase"] == "Pending"
        assert "services.unreachable.sage.test" in status["message"]
        assert get(kubectl, namespace, "service", "guarded") is None
    finally:
        kubectl("delete", "validatingwebhookconfiguration", f"unreachable-{namespace}")
    wait_until(lambda: get(kubectl, namespace, "service", "guarded"), "the Service once the webhook is gone", 90)
    wait_phase(kubectl, namespace, "guarded", "Deploying", timeout=60)
