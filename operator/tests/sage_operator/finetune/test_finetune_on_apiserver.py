"""FinetuneJobs reconciled by the operator process on the real API server. The Job controller
(kube-controller-manager) is real and creates the training pods; no kubelet runs them, so the
tests play the kubelet by patching pod status, and the runner by patching status.progress.
The whole flow — training, pausing, hand-off to a running engine pod — runs for real on the node
(e2e/tests/test_node_finetune.py); these are the edges that are quicker to reach here."""

from __future__ import annotations

import json
from typing import Any

from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.waiting import wait_until
from sage_testing.kubelet import report_pod_exited

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
