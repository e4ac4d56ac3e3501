"""FinetuneJobs reconciled by the operator process on the real API server. The Job controller
(kube-controller-manager) is real and creates the training pods; no kubelet runs them, so the
tests play the kubelet by patching pod status, and the runner by patching status.progress."""

from __future__ import annotations

import json
from typing import Any

import httpx

from sage_harness.engines import EngineProcess
from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.waiting import wait_until
from sage_testing.kubelet import live_pods, report_pod_exited, report_pod_ready

PAUSED_BY = "sage.ai/paused-by"

FINETUNE = """
apiVersion: sage.ai/v1alpha1
kind: FinetuneJob
metadata: {{name: {name}}}
spec:
  baseModel: tiny-lm
  dataset: {{source: "{source}", format: chat}}
  output: {{claimName: adapters}}
  backoffLimit: {backoff}
  suspend: {suspend}
  preemptEngines: {{matchLabels: {{pool: shared-gpu}}}}
  serve: {{engine: served}}
"""

ENGINE = """
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}, labels: {{pool: shared-gpu}}}}
spec: {{model: deterministic, backend: deterministic, replicas: {replicas}, preemptible: {preemptible}}}
"""


def apply_finetune(
    kubectl: Kubectl,
    ns: str,
    name: str,
    *,
    suspend: bool = False,
    backoff: int = 1,
    source: str = "configmap://data/train.jsonl",
) -> None:
    manifest = FINETUNE.format(name=name, suspend=str(suspend).lower(), backoff=backoff, source=source)
    kubectl.apply(manifest, ns)


def apply_engine(kubectl: Kubectl, ns: str, name: str, replicas: int = 2, *, preemptible: bool = True) -> None:
    kubectl.apply(ENGINE.format(name=name, replicas=replicas, preemptible=str(preemptible).lower()), ns)


def get(kubectl: Kubectl, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    result = kubectl.run("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def ftj_status(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return (get(kubectl, ns, "finetunejob", name) or {}).get("status") or {}


def wait_ftj_phase(kubectl: Kubectl, ns: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = ftj_status(kubectl, ns, name)
        return status if status.get("phase") == phase else None

    return wait_until(reached, f"FinetuneJob {ns}/{name} phase {phase}", timeout)


def training_pod(kubectl: Kubectl, ns: str, name: str) -> str:
    def pod() -> str | None:
        items = kubectl.json("get", "pods", "-n", ns, "-l", f"sage.ai/finetunejob={name}")["items"]
        running = [
            p for p in items if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Pending"
        ]
        return running[0]["metadata"]["name"] if running else None

    return wait_until(pod, f"the Job controller's pod for {name}")


def finish_pod(kubectl: Kubectl, ns: str, pod: str, *, exit_code: int) -> None:
    report_pod_exited(kubectl, ns, pod, container="trainer", exit_code=exit_code)


def engine(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    found = get(kubectl, ns, "llmengine", name)
    assert found is not None
    return found


def test_training_job_runs_pauses_engines_and_hands_off(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_engine(kubectl, namespace, "served", replicas=2)
    apply_engine(kubectl, namespace, "pinned", replicas=1, preemptible=False)
    apply_finetune(kubectl, namespace, "ft")

    job = wait_until(lambda: get(kubectl, namespace, "job", "ft"), "the training Job")
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("FinetuneJob", "ft", True)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "ft-progress"
    role = get(kubectl, namespace, "role", "ft-progress")
    assert role is not None
    assert role["rules"][0]["resources"] == ["finetunejobs/status"]
    assert role["rules"][0]["resourceNames"] == ["ft"]

    pod = training_pod(kubectl, namespace, "ft")
    wait_ftj_phase(kubectl, namespace, "ft", "Running")
    paused = wait_until(
        lambda: (e := engine(kubectl, namespace, "served"))["spec"]["replicas"] == 0 and e,
        "the preemptible engine paused",
    )
    assert paused["metadata"]["annotations"][PAUSED_BY] == "ft"
    assert engine(kubectl, namespace, "pinned")["spec"]["replicas"] == 1

    # The runner reports progress into the status subresource.
    progress = {"status": {"progress": {"step": 37, "totalSteps": 100, "percent": 37, "loss": 1.25}}}
    kubectl("patch", "ftj", "ft", "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(progress))

    def progress_row() -> list[str] | None:
        row = kubectl("get", "ftj", "ft", "-n", namespace, "--no-headers").split()
        return row if "37%" in row else None

    row = wait_until(progress_row, "the PROGRESS column")
    assert "1.25" in row

    finish_pod(kubectl, namespace, pod, exit_code=0)
    status = wait_ftj_phase(kubectl, namespace, "ft", "Succeeded")
    assert status["output"] == {"uri": "pvc://adapters/finetune/ft", "baseModel": "tiny-lm", "rank": 16}
    assert status["progressText"] == "100%"
    assert status["completionTime"]
    assert "serves it as model 'ft'" in status["message"]
    restored = wait_until(
        lambda: (e := engine(kubectl, namespace, "served"))["spec"]["replicas"] == 2 and e, "the engine restored"
    )
    assert PAUSED_BY not in (restored["metadata"].get("annotations") or {})
    assert {"name": "ft", "finetuneJob": "ft"} in restored["spec"]["adapters"]
    reasons = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=ft", "-o", "name")
    assert reasons


def test_suspend_stops_the_pod_gives_engines_back_and_resume_continues(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_engine(kubectl, namespace, "served", replicas=3)
    apply_finetune(kubectl, namespace, "ft")
    training_pod(kubectl, namespace, "ft")
    wait_ftj_phase(kubectl, namespace, "ft", "Running")
    wait_until(lambda: engine(kubectl, namespace, "served")["spec"]["replicas"] == 0, "engine paused")

    apply_finetune(kubectl, namespace, "ft", suspend=True)
    wait_until(lambda: (get(kubectl, namespace, "job", "ft") or {})["spec"].get("suspend"), "the Job suspended")
    wait_ftj_phase(kubectl, namespace, "ft", "Suspended")
    wait_until(lambda: engine(kubectl, namespace, "served")["spec"]["replicas"] == 3, "engine back while suspended")

    apply_finetune(kubectl, namespace, "ft", suspend=False)
    training_pod(kubectl, namespace, "ft")
    wait_ftj_phase(kubectl, namespace, "ft", "Running")
    wait_until(lambda: engine(kubectl, namespace, "served")["spec"]["replicas"] == 0, "engine paused again")


def test_engines_come_back_after_an_operator_restart(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_engine(kubectl, namespace, "served", replicas=2)
    apply_finetune(kubectl, namespace, "ft")
    wait_ftj_phase(kubectl, namespace, "ft", "Running")
    wait_until(lambda: engine(kubectl, namespace, "served")["spec"]["replicas"] == 0, "engine paused")
    operator.stop()
    # While no operator runs, the job is deleted: only the engine's annotations remember the pause.
    kubectl("delete", "ftj", "ft", "-n", namespace, "--wait=false")
    operator.start()
    restored = wait_until(
        lambda: (e := engine(kubectl, namespace, "served"))["spec"]["replicas"] == 2 and e,
        "the engine restored by the restarted operator",
        timeout=90,
    )
    assert PAUSED_BY not in (restored["metadata"].get("annotations") or {})


def test_a_failed_attempt_beyond_the_backoff_limit_fails_the_job(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_finetune(kubectl, namespace, "ft", backoff=0)
    finish_pod(kubectl, namespace, training_pod(kubectl, namespace, "ft"), exit_code=1)
    status = wait_ftj_phase(kubectl, namespace, "ft", "Failed")
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert status["attempts"] >= 1


def test_an_unmountable_dataset_is_an_invalid_spec(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    apply_finetune(kubectl, namespace, "ft", source="configmap://no-key")
    status = wait_ftj_phase(kubectl, namespace, "ft", "Failed")
    assert "spec.dataset.source" in status["message"]
    assert get(kubectl, namespace, "job", "ft") is None


def pod_template(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    template: dict[str, Any] = kubectl.json("get", "deployment", name, "-n", ns)["spec"]["template"]
    return template


def mounts_claim(template: dict[str, Any], claim: str) -> bool:
    volumes = template["spec"].get("volumes") or []
    return any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in volumes)


def test_hand_off_loads_the_adapter_into_running_pods_without_rolling_them(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, engine_port: int
) -> None:
    apply_engine(kubectl, namespace, "served", replicas=1, preemptible=False)
    apply_finetune(kubectl, namespace, "ft")

    # The job's output claim is mounted from the start (one roll, at creation, before training).
    def template_with_claim() -> dict[str, Any] | None:
        template = pod_template(kubectl, namespace, "served")
        return template if mounts_claim(template, "adapters") else None

    template = wait_until(template_with_claim, "the engine pods to mount the job's output claim")

    def current_pod() -> str | None:
        pods = [p for p in live_pods(kubectl, namespace, "sage.ai/engine=served") if mounts_claim(p, "adapters")]
        return str(pods[0]["metadata"]["name"]) if pods else None

    pod = wait_until(current_pod, "a pod of the current template")
    with EngineProcess("deterministic", "deterministic", served_model_name="served", port=engine_port) as engine:
        report_pod_ready(kubectl, namespace, pod, container="engine")
        wait_until(lambda: engine_status(kubectl, namespace, "served").get("phase") == "Ready", "the engine Ready")

        finish_pod(kubectl, namespace, training_pod(kubectl, namespace, "ft"), exit_code=0)
        wait_ftj_phase(kubectl, namespace, "ft", "Succeeded")
        wait_until(
            lambda: "ft" in (engine_status(kubectl, namespace, "served").get("servedModels") or []),
            "the adapter in the engine's servedModels",
        )
        assert engine_status(kubectl, namespace, "served")["servedModels"] == ["served", "ft"]
        models = {m["id"] for m in httpx.get(f"{engine.base_url}/v1/models").json()["data"]}
        assert "ft" in models
        assert pod_template(kubectl, namespace, "served") == template, "the hand-off rolled the engine pods"
        assert [p["metadata"]["name"] for p in live_pods(kubectl, namespace, "sage.ai/engine=served")] == [pod]


def engine_status(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = engine(kubectl, ns, name).get("status") or {}
    return status


def test_a_paused_engine_says_which_job_paused_it(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    apply_engine(kubectl, namespace, "served", replicas=2)
    apply_finetune(kubectl, namespace, "ft")
    wait_until(lambda: engine_status(kubectl, namespace, "served").get("phase") == "Paused", "the engine Paused")
    ready = next(c for c in engine_status(kubectl, namespace, "served")["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "PausedByFinetuneJob"
    assert "FinetuneJob ft" in ready["message"]
