"""FinetuneJob -> the Kubernetes Job that trains, and the narrowly scoped ServiceAccount that lets
the runner patch its own progress into the FinetuneJob's status (pure)."""

from __future__ import annotations

from typing import Any

from sage_api import names
from sage_api.finetune import FinetuneJob, FinetuneMethod, LoraConfig, TrainingConfig
from sage_operator.core.kinds import FINETUNE_OWNER
from sage_operator.core.metadata import (
    child_labels,
    child_metadata,
    restricted_container_security,
    restricted_pod_security,
)
from sage_operator.finetune.volumes import Mount, base_model_argument, base_model_mount, dataset_mount, output_mount

CONTAINER = "trainer"
# The runner saves a checkpoint on SIGTERM and exits with this code (see docs/finetune-runner.md):
# such an attempt does not count against backoffLimit; the next pod resumes from the checkpoint.
CHECKPOINT_EXIT_CODE = 75
# Bad input (a malformed dataset line, a bad option): retrying cannot help.
BAD_INPUT_EXIT_CODE = 2
# Time the runner gets between SIGTERM (suspend, preemption, deletion) and SIGKILL to write it.
CHECKPOINT_GRACE_SECONDS = 300


def finetune_labels(name: str) -> dict[str, str]:
    return child_labels(FINETUNE_OWNER, name)


def _metadata(job: FinetuneJob, name: str) -> dict[str, Any]:
    return child_metadata(FINETUNE_OWNER, job.metadata, name)


def progress_account_name(job: FinetuneJob) -> str:
    return f"{job.metadata['name']}-progress"


def _runner_env(job: FinetuneJob, dataset: Mount, output: Mount) -> list[dict[str, str]]:
    spec = job.spec
    lora = spec.lora or LoraConfig()
    training = spec.training or TrainingConfig()
    values: dict[str, str | None] = {
        "BASE_MODEL": base_model_argument(job),
        "DATASET": dataset.path_in_pod,
        "FORMAT": spec.dataset.format.value,
        "METHOD": spec.method.value,
        "OUTPUT": output.path_in_pod,
        "EPOCHS": str(training.epochs),
        "MAX_STEPS": str(training.max_steps) if training.max_steps else None,
        "LEARNING_RATE": str(training.learning_rate),
        "BATCH_SIZE": str(training.batch_size),
        "GRADIENT_ACCUMULATION_STEPS": str(training.gradient_accumulation_steps),
        "MAX_SEQ_LENGTH": str(training.max_seq_length),
        "SEED": str(training.seed),
        "STATUS_TARGET": f"{job.metadata['namespace']}/{job.metadata['name']}",
    }
    if spec.method is FinetuneMethod.LORA:
        values |= {"RANK": str(lora.rank), "ALPHA": str(lora.alpha), "DROPOUT": str(lora.dropout)}
        if lora.target_modules:
            values["TARGET_MODULES"] = ",".join(lora.target_modules)
    env = [{"name": f"SAGE_FT_{key}", "value": value} for key, value in values.items() if value is not None]
    return [*env, {"name": "HF_HOME", "value": f"{output_mount(job).mount['mountPath']}/.hf-cache"}]


# Requests of a runner whose spec gives none. Without any, the pod would be BestEffort: the first
# evicted under node pressure (losing the steps since its last checkpoint), and scheduled anywhere.
DEFAULT_REQUESTS = {"cpu": "1", "memory": "2Gi"}


def _resources(job: FinetuneJob) -> dict[str, Any]:
    resources = job.spec.resources
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = dict(DEFAULT_REQUESTS)
    if resources is not None:
        if resources.gpus:
            limits[resources.gpu_resource_name] = resources.gpus
        for key, value in (("cpu", resources.cpu), ("memory", resources.memory)):
            if value is not None:
                requests[key] = limits[key] = str(value)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _exit_codes(code: int) -> dict[str, Any]:
    return {"containerName": CONTAINER, "operator": "In", "values": [code]}


def render_finetune_job(job: FinetuneJob, *, image: str) -> dict[str, Any]:
    """The batch/v1 Job. Its `suspend` follows the FinetuneJob's: Kubernetes then deletes the pod
    with a grace period in which the runner writes a checkpoint, and a resumed Job's new pod
    continues from it. Disruptions (preemption, drain) and checkpointed stops do not count against
    backoffLimit; bad input fails the job at once."""
    dataset, output = dataset_mount(job), output_mount(job)
    mounts = [dataset, output] + ([model] if (model := base_model_mount(job)) else [])
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "sage_finetune"],
        "env": _runner_env(job, dataset, output),
        "volumeMounts": [m.mount for m in mounts] + [{"name": "shm", "mountPath": "/dev/shm"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container_security(),
    }
    container["resources"] = _resources(job)
    job_spec: dict[str, Any] = {
        "backoffLimit": job.spec.backoff_limit,
        "suspend": job.spec.suspend,
        "podFailurePolicy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {"action": "FailJob", "onExitCodes": _exit_codes(BAD_INPUT_EXIT_CODE)},
                {"action": "Ignore", "onExitCodes": _exit_codes(CHECKPOINT_EXIT_CODE)},
            ]
        },
        "template": {
            "metadata": {"labels": finetune_labels(job.metadata["name"])},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": progress_account_name(job),
                "terminationGracePeriodSeconds": CHECKPOINT_GRACE_SECONDS,
                "securityContext": restricted_pod_security(),
                "containers": [container],
                "volumes": [m.volume for m in mounts] + [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
            },
        },
    }
    if job.spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = job.spec.active_deadline_seconds
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(job, job.metadata["name"]), "spec": job_spec}


def render_progress_rbac(job: FinetuneJob) -> list[dict[str, Any]]:
    """ServiceAccount + Role + RoleBinding: the runner may get and patch the status of its own
    FinetuneJob, and nothing else."""
    name = progress_account_name(job)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(job, name)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(job, name),
            "rules": [
                {
                    "apiGroups": [names.GROUP],
                    "resources": [f"{names.FINETUNE_PLURAL}/status"],
                    "resourceNames": [job.metadata["name"]],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(job, name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.metadata["namespace"]}],
        },
    ]
