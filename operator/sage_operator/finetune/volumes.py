"""Where a FinetuneJob's inputs and outputs live inside the training pod (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sage_api.finetune import FinetuneJob

DATA_MOUNT = "/data"
OUTPUT_MOUNT = "/output"
MODELS_MOUNT = "/models"


class SourceError(ValueError):
    """A dataset or model location that cannot be mounted; the message names the field."""


@dataclass(frozen=True)
class Mount:
    volume: dict[str, Any]
    mount: dict[str, Any]
    path_in_pod: str


def _split(uri: str, scheme: str, field: str) -> tuple[str, str]:
    rest = uri.removeprefix(scheme)
    claim, _, path = rest.partition("/")
    if not claim or not path:
        msg = f"{field}: {uri!r} must be {scheme}<name>/<path>"
        raise SourceError(msg)
    return claim, path


def dataset_mount(job: FinetuneJob) -> Mount:
    source = job.spec.dataset.source
    if source.startswith("configmap://"):
        name, key = _split(source, "configmap://", "spec.dataset.source")
        volume = {"name": "dataset", "configMap": {"name": name, "items": [{"key": key, "path": key}]}}
        return Mount(volume, {"name": "dataset", "mountPath": DATA_MOUNT, "readOnly": True}, f"{DATA_MOUNT}/{key}")
    claim, path = _split(source, "pvc://", "spec.dataset.source")
    volume = {"name": "dataset", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    return Mount(volume, {"name": "dataset", "mountPath": DATA_MOUNT, "readOnly": True}, f"{DATA_MOUNT}/{path}")


def output_path(job: FinetuneJob) -> str:
    """Folder inside the output claim: spec.output.path, else finetune/<job name>."""
    return (job.spec.output.path or f"finetune/{job.metadata['name']}").strip("/")


def output_mount(job: FinetuneJob) -> Mount:
    volume = {"name": "output", "persistentVolumeClaim": {"claimName": job.spec.output.claim_name}}
    return Mount(volume, {"name": "output", "mountPath": OUTPUT_MOUNT}, f"{OUTPUT_MOUNT}/{output_path(job)}")


def output_uri(job: FinetuneJob) -> str:
    return f"pvc://{job.spec.output.claim_name}/{output_path(job)}"


def base_model_mount(job: FinetuneJob) -> Mount | None:
    """A pvc:// base model is mounted read-only; a hub id is read by the runner itself."""
    model = job.spec.base_model
    if not model.startswith("pvc://"):
        return None
    claim, path = _split(model, "pvc://", "spec.baseModel")
    volume = {"name": "base-model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    return Mount(volume, {"name": "base-model", "mountPath": MODELS_MOUNT, "readOnly": True}, f"{MODELS_MOUNT}/{path}")


def base_model_argument(job: FinetuneJob) -> str:
    mount = base_model_mount(job)
    if mount is not None:
        return mount.path_in_pod
    return job.spec.base_model.removeprefix("hf://")
