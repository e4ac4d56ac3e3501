"""The runner patches its FinetuneJob's status.progress on the real API server, through the
ServiceAccount the operator renders (get/patch on its own FinetuneJob's status and nothing else)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sage_api.finetune import FinetuneJob
from sage_finetune.kube_status import KubeStatusSink, in_cluster_config, status_patch
from sage_finetune.progress import ProgressEvent, ProgressLine
from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl
from sage_operator.finetune.render import progress_account_name, render_progress_rbac

JOB_MANIFEST = {
    "apiVersion": "sage.ai/v1alpha1",
    "kind": "FinetuneJob",
    "spec": {
        "baseModel": "pvc://models/tiny",
        "dataset": {"source": "configmap://data/train.jsonl", "format": "chat"},
        "output": {"claimName": "adapters"},
    },
}


def line(event: ProgressEvent, step: int, checkpoint: str | None = None) -> ProgressLine:
    return ProgressLine(
        event=event,
        time="2026-11-23T19:00:00Z",
        step=step,
        total_steps=40,
        loss=2.0 / step,
        percent=step * 100 // 40,
        steps_per_second=10.0,
        checkpoint=checkpoint,
    )


def create_job(kubectl: Kubectl, namespace: str, name: str) -> None:
    kubectl.apply(json.dumps(JOB_MANIFEST | {"metadata": {"name": name}}), namespace)


def runner_credentials(kubectl: Kubectl, control_plane: ControlPlane, namespace: str, job: str, folder: Path) -> Path:
    """Apply the operator's progress RBAC for `job` and lay out a ServiceAccount folder (token,
    CA) as the kubelet mounts it; return the folder."""
    uid = kubectl.json("get", "finetunejob", job, "-n", namespace)["metadata"]["uid"]
    model = FinetuneJob.model_validate(JOB_MANIFEST | {"metadata": {"name": job, "namespace": namespace, "uid": uid}})
    for manifest in render_progress_rbac(model):
        kubectl.apply(json.dumps(manifest), namespace)
    folder.mkdir(parents=True)
    (folder / "token").write_text(kubectl("create", "token", progress_account_name(model), "-n", namespace))
    (folder / "ca.crt").write_bytes((control_plane.certs / "ca.crt").read_bytes())
    return folder


def in_cluster_environment(monkeypatch: pytest.MonkeyPatch, control_plane: ControlPlane) -> dict[str, str]:
    host, port = control_plane.server.removeprefix("https://").rsplit(":", 1)
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def status_of(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = kubectl.json("get", "finetunejob", name, "-n", namespace).get("status", {})
    return status


def test_the_patch_carries_only_progress_and_the_checkpoint() -> None:
    assert status_patch(line(ProgressEvent.STEP, 4)) == {
        "status": {"progress": {"step": 4, "totalSteps": 40, "loss": 0.5, "percent": 10}}
    }
    assert (
        status_patch(line(ProgressEvent.CHECKPOINT, 8, checkpoint="/out/checkpoints/step-8"))["status"][
            "lastCheckpoint"
        ]
        == "/out/checkpoints/step-8"
    )


def test_the_sink_patches_status_with_the_operators_narrow_service_account(
    kubectl: Kubectl, control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_job(kubectl, namespace, "mine")
    create_job(kubectl, namespace, "other")
    account = runner_credentials(kubectl, control_plane, namespace, "mine", tmp_path / "sa")
    in_cluster_environment(monkeypatch, control_plane)
    config = in_cluster_config(account)
    assert config is not None

    sink = KubeStatusSink(config, f"{namespace}/mine", interval_seconds=0.1)
    for step in range(1, 21):
        sink.publish(line(ProgressEvent.STEP, step))
    sink.publish(line(ProgressEvent.STOPPED, 20, checkpoint="/out/checkpoints/step-20"))
    sink.close()

    status = status_of(kubectl, namespace, "mine")
    assert status["progress"] == {"step": 20, "totalSteps": 40, "loss": 0.1, "percent": 50}
    assert status["lastCheckpoint"] == "/out/checkpoints/step-20"

    # The same token can change nothing else: not the spec, not another job's status.
    token = (account / "token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json"}
    base = f"/apis/sage.ai/v1alpha1/namespaces/{namespace}/finetunejobs"
    with httpx.Client(base_url=config.server, verify=config.ssl_context(), headers=headers) as client:
        spec = client.patch(f"{base}/mine", content='{"spec": {"suspend": true}}')
        other = client.patch(f"{base}/other/status", content='{"status": {"progress": {"step": 1}}}')
        listing = client.get(base)
    assert (spec.status_code, other.status_code, listing.status_code) == (403, 403, 403)


def test_a_refused_patch_is_logged_and_never_fails_training(
    *,
    kubectl: Kubectl,
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_job(kubectl, namespace, "mine")
    account = runner_credentials(kubectl, control_plane, namespace, "mine", tmp_path / "sa")
    in_cluster_environment(monkeypatch, control_plane)
    config = in_cluster_config(account)
    assert config is not None

    with caplog.at_level(logging.WARNING):
        sink = KubeStatusSink(config, f"{namespace}/someone-else", interval_seconds=0.1)
        sink.publish(line(ProgressEvent.COMPLETED, 40))
        sink.close()

    assert "someone-else/status failed (1 in a row)" in caplog.text
    assert "forbidden" in caplog.text.lower()


def test_the_runner_reports_progress_into_its_finetunejob_while_training(
    *,
    kubectl: Kubectl,
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trainable_tiny_lm_path: Path,
    codeword_chat_dataset: Path,
    runner_env: dict[str, str],
) -> None:
    create_job(kubectl, namespace, "support-ft")
    account = runner_credentials(kubectl, control_plane, namespace, "support-ft", tmp_path / "sa")
    env = runner_env | in_cluster_environment(monkeypatch, control_plane)
    output = tmp_path / "adapter"
    settings = {
        "SAGE_FT_BASE_MODEL": str(trainable_tiny_lm_path),
        "SAGE_FT_DATASET": str(codeword_chat_dataset),
        "SAGE_FT_OUTPUT": str(output),
        "SAGE_FT_MAX_STEPS": "100000",  # cannot finish on its own
        "SAGE_FT_STATUS_TARGET": f"{namespace}/support-ft",
        "SAGE_FT_STATUS_INTERVAL_SECONDS": "0.2",
        "SAGE_FT_SERVICE_ACCOUNT_DIR": str(account),
    }
    with (tmp_path / "stderr.log").open("w") as stderr:
        runner = subprocess.Popen(
            [sys.executable, "-m", "sage_finetune"], env=env | settings, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            deadline = time.monotonic() + 120
            progress: dict[str, Any] = {}
            while progress.get("step", 0) < 3:
                assert runner.poll() is None, (tmp_path / "stderr.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "stderr.log").read_text()[-3000:]
                time.sleep(0.2)
                progress = status_of(kubectl, namespace, "support-ft").get("progress", {})
            assert runner.poll() is None  # the status moved while the runner was still training
            assert progress["totalSteps"] == 100000
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(timeout=120) == 75
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()

    status = status_of(kubectl, namespace, "support-ft")
    stopped_at = status["progress"]["step"]
    assert status["lastCheckpoint"] == str(output / "checkpoints" / f"step-{stopped_at}")
    assert (output / "checkpoints" / f"step-{stopped_at}" / "trainer_state.json").is_file()
