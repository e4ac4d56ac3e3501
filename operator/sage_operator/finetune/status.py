"""The FinetuneJob status that tells the truth, computed from its Job (pure).

The runner writes `status.progress` itself (see docs/finetune-progress.md); the operator owns the
rest: phase, attempts, times, output, conditions, message and the PROGRESS column's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sage_api.conditions import condition_is, merge_conditions, set_condition
from sage_api.finetune import FinetuneJob, FinetuneMethod, FinetunePhase, LoraConfig
from sage_operator.finetune.volumes import output_uri

# Phases in which the training pod holds (or waits for) its accelerators.
HOLDS_RESOURCES = frozenset({FinetunePhase.PENDING, FinetunePhase.RUNNING})
FINISHED = frozenset({FinetunePhase.SUCCEEDED, FinetunePhase.FAILED})


@dataclass(frozen=True)
class JobView:
    """What the operator observed of the Kubernetes Job (None: not created yet)."""

    job: dict[str, Any] | None

    @property
    def status(self) -> dict[str, Any]:
        return (self.job or {}).get("status") or {}

    def condition(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status.get("conditions") or [] if c.get("type") == type_), None)

    @property
    def attempts(self) -> int:
        return sum(int(self.status.get(key) or 0) for key in ("active", "succeeded", "failed"))


def phase_of(job: FinetuneJob, observed: JobView) -> tuple[FinetunePhase, str, str]:
    """Phase, reason and message."""
    if observed.job is None:
        if job.spec.suspend:
            return FinetunePhase.SUSPENDED, "Suspended", "suspended before it started"
        return FinetunePhase.PENDING, "JobCreating", "creating the training Job"
    conditions = observed.status.get("conditions") or []
    if condition_is(conditions, "Complete"):
        return FinetunePhase.SUCCEEDED, "Completed", f"training finished; output at {output_uri(job)}"
    if (failed := observed.condition("Failed")) and failed.get("status") == "True":
        reason = str(failed.get("reason") or "JobFailed")
        return FinetunePhase.FAILED, reason, str(failed.get("message") or "the training Job failed")
    if condition_is(conditions, "Suspended") or (job.spec.suspend and not observed.status.get("active")):
        return FinetunePhase.SUSPENDED, "Suspended", "suspended; the newest checkpoint is kept for resuming"
    if observed.status.get("active"):
        return FinetunePhase.RUNNING, "Training", "training"
    return FinetunePhase.PENDING, "WaitingForPod", "waiting for the training pod to start"


def progress_text(phase: FinetunePhase, progress: dict[str, Any] | None) -> str | None:
    if phase is FinetunePhase.SUCCEEDED:
        return "100%"
    percent = (progress or {}).get("percent")
    return f"{int(percent)}%" if percent is not None else None


def compute_status(job: FinetuneJob, observed: JobView, previous: dict[str, Any], now: str) -> dict[str, Any]:
    """The status fields the operator owns (wire format), for a merge patch of the status."""
    phase, reason, message = phase_of(job, observed)
    generation = job.metadata.get("generation")
    old_conditions = previous.get("conditions")
    updates = [
        set_condition(
            old_conditions,
            kind,
            status=phase is target,
            reason=reason if phase is target else kind,
            message=message if phase is target else "",
            now=now,
            observed_generation=generation,
        )
        for kind, target in (
            ("Complete", FinetunePhase.SUCCEEDED),
            ("Failed", FinetunePhase.FAILED),
            ("Suspended", FinetunePhase.SUSPENDED),
        )
    ]
    status: dict[str, Any] = {
        "phase": phase.value,
        "message": message,
        "attempts": observed.attempts,
        "observedGeneration": generation,
        "conditions": merge_conditions(old_conditions, updates),
        "progressText": progress_text(phase, previous.get("progress")),
    }
    if start := observed.status.get("startTime"):
        status["startTime"] = start
    if phase in FINISHED:
        finished = observed.condition("Complete" if phase is FinetunePhase.SUCCEEDED else "Failed") or {}
        status["completionTime"] = (
            observed.status.get("completionTime")
            or finished.get("lastTransitionTime")
            or previous.get("completionTime")
            or now
        )
    if phase is FinetunePhase.SUCCEEDED:
        status["output"] = output_of(job)
        if job.spec.serve is None:
            status["message"] = (
                f"{message}. To serve it, add {{name: <adapter name>, finetuneJob: {job.metadata['name']}}} "
                "to an LLMEngine's spec.adapters (same namespace), or set spec.serve.engine."
            )
    return status


def output_of(job: FinetuneJob) -> dict[str, Any]:
    output: dict[str, Any] = {"uri": output_uri(job), "baseModel": job.spec.base_model}
    if job.spec.method is FinetuneMethod.LORA:
        output["rank"] = (job.spec.lora or LoraConfig()).rank
    return output
