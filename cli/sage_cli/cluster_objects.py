"""What the cluster target sends and reads (pure): a FinetuneJob and its dataset ConfigMap from a
FinetuneRequest, rows and fine-tune states from LLMEngine and FinetuneJob objects, log prefixes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sage_api.finetune import FinetuneJob, FinetuneProgress
from sage_api.finetune_request import FinetuneRequest
from sage_api.names import API_VERSION, FINETUNE
from sage_cli.targets import EngineRow, FinetuneState, TargetError

PVC = "pvc://"
CONFIGMAP = "configmap://"
MAX_UPLOADED_DATASET = 900 * 1024
"""Bytes: a ConfigMap holds at most 1 MiB, and the object's own fields count too."""

_NOT_KEY = re.compile(r"[^-._a-zA-Z0-9]+")


@dataclass(frozen=True)
class PvcLocation:
    claim: str
    path: str | None


def output_location(output: str) -> PvcLocation:
    """`pvc://claim[/path]`, the only place a cluster can write a fine-tune's result."""
    claim, _, path = output.removeprefix(PVC).partition("/")
    if not output.startswith(PVC) or not claim:
        msg = f"--output: a cluster writes to a PersistentVolumeClaim: give pvc://<claim>[/<path>], not {output!r}"
        raise TargetError(msg)
    return PvcLocation(claim, path.strip("/") or None)


def remote_dataset(dataset: str) -> str | None:
    """`dataset` when it is already in the cluster (pvc://claim/path or configmap://name/key),
    None when it names a local file."""
    for scheme in (PVC, CONFIGMAP):
        if dataset.startswith(scheme):
            where, _, inside = dataset.removeprefix(scheme).partition("/")
            if not where or not inside.strip("/"):
                msg = f"--dataset: {dataset!r} must be {scheme}<name>/<path>"
                raise TargetError(msg)
            return dataset
    return None


def dataset_config_map_name(job: str) -> str:
    return f"{job}-dataset"


def dataset_key(file_name: str) -> str:
    """A ConfigMap key (letters, digits, '-', '_', '.') for an uploaded file, after its name."""
    key = _NOT_KEY.sub("-", file_name).strip("-")
    return key if key.strip(".") else "dataset.jsonl"


def check_upload_size(file_name: str, size: int) -> None:
    if size >= MAX_UPLOADED_DATASET:
        msg = (
            f"--dataset: {file_name} is {size / 1024:.0f} KiB; a local file is uploaded as a ConfigMap only below "
            f"{MAX_UPLOADED_DATASET // 1024} KiB: copy it to a PersistentVolumeClaim and give pvc://<claim>/<path>"
        )
        raise TargetError(msg)


def finetune_manifest(request: FinetuneRequest, *, dataset_source: str) -> dict[str, Any]:
    """The FinetuneJob of `request`, validated by the model its CRD is generated from."""
    output = output_location(request.output)
    training: dict[str, Any] = {
        "epochs": request.epochs,
        "learningRate": request.learning_rate,
        "batchSize": request.batch_size,
    }
    if request.max_steps is not None:
        training["maxSteps"] = request.max_steps
    spec: dict[str, Any] = {
        "baseModel": request.base_model,
        "dataset": {"source": dataset_source, "format": request.format},
        "method": request.method,
        "training": training,
        "output": {"claimName": output.claim} | ({"path": output.path} if output.path else {}),
    }
    if request.method == "lora":
        spec["lora"] = {"rank": request.rank, "alpha": request.alpha}
    if request.serve:
        spec["serve"] = {"engine": request.serve}
    manifest = {"apiVersion": API_VERSION, "kind": FINETUNE.kind, "metadata": {"name": request.name}, "spec": spec}
    try:
        FinetuneJob.model_validate(manifest)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        msg = f"the FinetuneJob {request.name} is not valid: {field}: {problem['msg']}"
        raise TargetError(msg) from None
    return manifest


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """A reference to `owner` (an object as the API server returned it), so that deleting the
    owner deletes what it owns."""
    metadata = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": metadata["name"], "uid": metadata["uid"]}


def dataset_config_map(job: dict[str, Any], *, key: str, text: str) -> dict[str, Any]:
    """The ConfigMap an uploaded dataset lives in, owned by its FinetuneJob `job`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": dataset_config_map_name(job["metadata"]["name"]),
            "ownerReferences": [owner_reference(job)],
        },
        "data": {key: text},
    }


def _status(item: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = item.get("status") or {}
    return status


def _spec(item: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = item.get("spec") or {}
    return spec


def progress_of(status: dict[str, Any]) -> FinetuneProgress | None:
    reported = status.get("progress")
    if not reported:
        return None
    try:
        return FinetuneProgress.model_validate(reported)
    except ValidationError:
        return None  # written by another version of the runner: a row without progress


def message_of(status: dict[str, Any]) -> str:
    """status.message, else why the Ready condition is False."""
    if message := status.get("message"):
        return str(message)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "False":
            return str(condition.get("message") or "")
    return ""


def phase_of(status: dict[str, Any]) -> str:
    return str(status.get("phase") or "Pending")


def engine_row(engine: dict[str, Any]) -> EngineRow:
    spec, status = _spec(engine), _status(engine)
    return EngineRow(
        name=engine["metadata"]["name"],
        kind=str(spec.get("engineKind") or "llm"),
        model=str(spec.get("model") or "-"),
        backend=str(status.get("backend") or spec.get("backend") or "-"),
        ready=f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}",
        phase=phase_of(status),
        message=message_of(status),
    )


def finetune_row(job: dict[str, Any]) -> EngineRow:
    spec, status = _spec(job), _status(job)
    return EngineRow(
        name=job["metadata"]["name"],
        kind="finetune",
        model=str(spec.get("baseModel") or "-"),
        backend="-",
        ready="-",
        phase=phase_of(status),
        progress=progress_of(status),
        message=message_of(status),
    )


def rows(engines: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> list[EngineRow]:
    """Engines first, then fine-tunes, each sorted by name."""
    by_name = sorted(engines, key=lambda item: str(item["metadata"]["name"]))
    jobs_by_name = sorted(jobs, key=lambda item: str(item["metadata"]["name"]))
    return [engine_row(engine) for engine in by_name] + [finetune_row(job) for job in jobs_by_name]


def finetune_state(job: dict[str, Any]) -> FinetuneState:
    status = _status(job)
    uri = (status.get("output") or {}).get("uri")
    return FinetuneState(
        phase=phase_of(status),
        progress=progress_of(status),
        message=message_of(status),
        result=str(uri) if uri else None,
    )


def no_log_yet(pod: dict[str, Any]) -> str | None:
    """Why a pod has no log to show, when the API server would answer with nothing: it is not on
    a node yet."""
    if (pod.get("spec") or {}).get("nodeName"):
        return None
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    return f"(no log yet: pod {pod['metadata']['name']} is {phase}, not scheduled to a node)"


def log_line(pod: str, line: str, *, many: bool) -> str:
    """A log line as shown: prefixed with its pod when lines of several pods interleave."""
    return f"{pod} | {line}" if many else line
