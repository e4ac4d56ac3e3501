"""The status function (pure): the observed Deployment and pods -> the LLMEngine's status, with
phase, concrete failure reasons, Kubernetes-style conditions and the Event a transition deserves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sage_api.conditions import set_condition
from sage_api.engine import Backend, EnginePhase
from sage_operator.core.metadata import ScaleNote
from sage_operator.engine.render import endpoint_url, selector_string
from sage_operator.engine.spec import InvalidSpec

# Container waiting reasons the user must fix; the pod will not get better on its own.
FATAL_WAITING_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    }
)
MESSAGE_LIMIT = 1000
REFUSED_INVALID = "ChildRejected"
# A same-named object of someone else's is in the way (never taken over): the user must act.
CHILD_CONFLICT = "ChildConflict"
# A condition of its own: a name another engine owns does not stop this one serving the rest.
NAME_CONFLICT = "NameConflict"
WARNING_PHASES = frozenset({EnginePhase.FAILED, EnginePhase.DEGRADED})
PROGRESSING_PHASES = frozenset({EnginePhase.PENDING, EnginePhase.DEPLOYING, EnginePhase.LOADING})


@dataclass(frozen=True)
class Failure:
    """Why a pod cannot serve, read from its status."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """What the operator saw for one engine."""

    name: str
    namespace: str
    generation: int
    desired_replicas: int
    backend: Backend | None
    model_names: list[str]
    deployment: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    loaded_adapters: list[str] = field(default_factory=list)
    invalid: InvalidSpec | None = None
    refused: Failure | None = None
    """The API server refused a rendered child (reason `Invalid`: the spec must change)."""
    paused_by: str | None = None
    """The FinetuneJob that scaled this engine to zero (annotation sage.ai/paused-by)."""
    name_conflict: str | None = None
    """Which of its model names older engines own (engine.name_claims), if any."""
    scaled: ScaleNote | None = None
    """The autoscaler's last change (annotation sage.ai/scaled), if it manages this engine."""


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _container_failure(pod_name: str, status: dict[str, Any]) -> Failure | None:
    container = status.get("name", "engine")
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    terminated = state.get("terminated") or {}
    for ended in (terminated, last):
        if ended.get("reason") == "OOMKilled":
            return Failure("OOMKilled", f"pod {pod_name}: container {container} ran out of memory (OOMKilled)")
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason") or ""
    if reason not in FATAL_WAITING_REASONS:
        return None
    if reason == "CrashLoopBackOff":
        ended = last or terminated
        detail = (ended.get("message") or "").strip() or f"exit code {ended.get('exitCode', '?')}"
        return Failure(reason, _clip(f"pod {pod_name}: container {container} keeps crashing: {detail}"))
    detail = (waiting.get("message") or "").strip()
    return Failure(reason, _clip(f"pod {pod_name}: container {container} {reason}" + (f": {detail}" if detail else "")))


def pod_failure(pod: dict[str, Any]) -> Failure | None:
    """The concrete reason a pod cannot become ready, if it is one the user must act on."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            needs = "".join(f"needs {resource}: {count}; " for resource, count in _device_requests(pod))
            return Failure("Unschedulable", _clip(f"pod {name}: {needs}{condition.get('message') or 'no node fits'}"))
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if failure := _container_failure(name, container):
            return failure
    return None


def _device_requests(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """The extended resources (GPUs and other devices: any `vendor/name`) the pod's containers
    ask for. The scheduler may report a node selector or taint first; this says what is needed."""
    found: list[tuple[str, str]] = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        found += [(str(resource), str(count)) for resource, count in limits.items() if "/" in str(resource)]
    return found


def pod_is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_is_scheduled(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if (pod.get("spec") or {}).get("nodeName") or status.get("phase") in {"Running", "Succeeded", "Failed"}:
        return True
    return any(c.get("type") == "PodScheduled" and c.get("status") == "True" for c in status.get("conditions") or [])


def replica_failure(deployment: dict[str, Any]) -> Failure | None:
    """Why the Deployment's pods cannot even be created (a quota, an admission policy such as Pod
    Security), from its ReplicaFailure condition."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            detail = (condition.get("message") or "").strip() or "the ReplicaSet cannot create them"
            return Failure(str(condition.get("reason") or "FailedCreate"), _clip(f"pods cannot be created: {detail}"))
    return None


def _live(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [pod for pod in pods if not (pod.get("metadata") or {}).get("deletionTimestamp")]


def phase_of(observed: Observed) -> tuple[EnginePhase, str, str]:
    """(phase, reason, message) for what was observed."""
    if observed.invalid is not None:
        return EnginePhase.FAILED, "InvalidSpec", str(observed.invalid)
    desired = observed.desired_replicas
    if observed.refused is not None:
        final = observed.refused.reason in {REFUSED_INVALID, CHILD_CONFLICT}
        return (EnginePhase.FAILED if final else EnginePhase.PENDING), observed.refused.reason, observed.refused.message
    if observed.deployment is None:
        return EnginePhase.PENDING, "Accepted", "creating the engine Deployment"
    deployment_status = observed.deployment.get("status") or {}
    ready = int(deployment_status.get("readyReplicas") or 0)
    if desired == 0 and observed.paused_by:
        message = f"scaled to zero while FinetuneJob {observed.paused_by} trains; its replicas come back when it ends"
        return EnginePhase.PAUSED, "PausedByFinetuneJob", message
    if desired == 0:
        why = f": {observed.scaled.message}" if observed.scaled and observed.scaled.reason == "ScaledToZero" else ""
        return EnginePhase.PAUSED, "ScaledToZero", f"scaled to zero replicas{why}"
    pods = sorted(_live(observed.pods), key=lambda pod: pod["metadata"].get("name", ""))
    failure = replica_failure(observed.deployment) or next(
        (f for pod in pods if not pod_is_ready(pod) and (f := pod_failure(pod))), None
    )
    if ready >= desired:
        return EnginePhase.READY, "AllReplicasReady", f"{ready}/{desired} replicas ready"
    if ready > 0:
        detail = f"; {failure.message}" if failure else ""
        return EnginePhase.DEGRADED, "SomeReplicasReady", f"{ready}/{desired} replicas ready{detail}"
    if failure is not None:
        return EnginePhase.FAILED, failure.reason, failure.message
    if any(pod_is_scheduled(pod) for pod in pods):
        return EnginePhase.LOADING, "Loading", f"0/{desired} replicas ready: loading the model"
    return EnginePhase.DEPLOYING, "Deploying", f"0/{desired} replicas ready: waiting for pods to be scheduled"


def compute_status(observed: Observed, previous: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """The status to write (wire format); `previous` keeps condition transition times stable."""
    previous = previous or {}
    phase, reason, message = phase_of(observed)
    deployment_status = (observed.deployment or {}).get("status") or {}
    ready = int(deployment_status.get("readyReplicas") or 0)
    replicas = int(deployment_status.get("replicas") or 0)
    updated = int(deployment_status.get("updatedReplicas") or 0)
    rolling = observed.deployment is not None and observed.desired_replicas > 0 and updated < observed.desired_replicas
    progressing = phase in PROGRESSING_PHASES or (phase is not EnginePhase.FAILED and rolling)
    progress_reason = reason if phase in PROGRESSING_PHASES else ("RollingUpdate" if progressing else reason)
    old_conditions = previous.get("conditions") or []
    common: dict[str, Any] = {"message": message, "observed_generation": observed.generation, "now": now}
    status: dict[str, Any] = {
        "phase": phase.value,
        "replicas": replicas,
        "readyReplicas": ready,
        "ready": f"{ready}/{observed.desired_replicas}",
        "selector": selector_string(observed.name),
        "endpoint": endpoint_url(observed.name, observed.namespace),
        "servedModels": (observed.model_names + observed.loaded_adapters) if observed.invalid is None else [],
        "observedGeneration": observed.generation,
        "message": message,
        "conditions": [
            set_condition(old_conditions, "Ready", status=phase is EnginePhase.READY, reason=reason, **common),
            set_condition(old_conditions, "Progressing", status=progressing, reason=progress_reason, **common),
        ],
    }
    had_conflict = any(c.get("type") == NAME_CONFLICT for c in old_conditions)
    if observed.name_conflict or had_conflict:
        status["conditions"].append(
            set_condition(
                old_conditions,
                NAME_CONFLICT,
                status=bool(observed.name_conflict),
                reason="NameTaken" if observed.name_conflict else "NamesOwned",
                message=observed.name_conflict or "every model name of this engine routes to it",
                observed_generation=observed.generation,
                now=now,
            )
        )
    if observed.scaled is not None:
        status["conditions"].append(scaled_condition(observed.scaled, observed.generation))
    if observed.backend is not None:
        status["backend"] = observed.backend.value
    return status


def scaled_condition(note: ScaleNote, generation: int) -> dict[str, Any]:
    """`Scaled`: the autoscaler's last change and why, since when (kubectl get -o wide: SCALING)."""
    return {
        "type": "Scaled",
        "status": "True",
        "reason": note.reason,
        "message": f"{note.reason}: {note.message}",
        "lastTransitionTime": note.time,
        "observedGeneration": generation,
    }


def transition_event(previous: dict[str, Any] | None, status: dict[str, Any]) -> Event | None:
    """One Event per phase transition (none when the phase stays)."""
    before = (previous or {}).get("phase")
    phase = EnginePhase(status["phase"])
    if before == phase.value:
        return None
    reason = status["conditions"][0]["reason"] if phase is EnginePhase.FAILED else phase.value
    kind = "Warning" if phase in WARNING_PHASES else "Normal"
    return Event(kind, reason, f"{before or 'new'} -> {phase.value}: {status.get('message', '')}")


def status_patch(previous: dict[str, Any] | None, status: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning `previous` into `status` (fields we no longer set become null), or None."""
    previous = previous or {}
    if all(previous.get(key) == value for key, value in status.items()) and set(previous) <= set(status):
        return None
    return {**{key: None for key in previous if key not in status}, **status}
