"""FinetuneJob status from its Job, and the preemption plan (pure)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sage_api.common import LabelSelector
from sage_api.finetune import FinetuneJob, FinetunePhase
from sage_harness.repo import REPO_ROOT
from sage_operator.finetune.preemption import (
    PAUSED_BY,
    REPLICAS_BEFORE_PAUSE,
    pause_patches,
    restore_patches,
    selector_matches,
)
from sage_operator.finetune.status import JobView, compute_status, phase_of

T0, T1 = "2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z"


def ftj(**spec: Any) -> FinetuneJob:
    document = yaml.safe_load((REPO_ROOT / "examples" / "finetune-lora.yaml").read_text())
    document["metadata"] |= {"namespace": "ml", "uid": "u", "generation": 2}
    document["spec"] |= spec
    return FinetuneJob.model_validate(document)


def job(**status: Any) -> JobView:
    return JobView({"status": status})


def cond(type_: str, status: str = "True", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "status": status, **extra}


@pytest.mark.parametrize(
    ("view", "spec", "phase"),
    [
        (JobView(None), {}, FinetunePhase.PENDING),
        (JobView(None), {"suspend": True}, FinetunePhase.SUSPENDED),
        (job(), {}, FinetunePhase.PENDING),
        (job(active=1), {}, FinetunePhase.RUNNING),
        (job(conditions=[cond("Suspended")]), {"suspend": True}, FinetunePhase.SUSPENDED),
        (job(succeeded=1, conditions=[cond("Complete")]), {}, FinetunePhase.SUCCEEDED),
        (job(failed=3, conditions=[cond("Failed", reason="BackoffLimitExceeded")]), {}, FinetunePhase.FAILED),
        (job(active=1, conditions=[cond("Failed", "False")]), {}, FinetunePhase.RUNNING),
    ],
)
def test_phase_follows_the_job(view: JobView, spec: dict[str, Any], phase: FinetunePhase) -> None:
    assert phase_of(ftj(**spec), view)[0] is phase


def test_failure_carries_the_jobs_reason() -> None:
    view = job(failed=3, conditions=[cond("Failed", reason="DeadlineExceeded", message="Job was active longer")])
    status = compute_status(ftj(), view, {}, T0)
    assert status["phase"] == "Failed"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert "active longer" in failed["message"]
    assert status["attempts"] == 3


def test_success_reports_output_and_completion() -> None:
    view = job(succeeded=1, startTime=T0, completionTime=T1, conditions=[cond("Complete")])
    status = compute_status(ftj(), view, {"progress": {"percent": 98}}, T1)
    assert status["output"] == {
        "uri": "pvc://adapters/support-bot",
        "baseModel": "Qwen/Qwen2.5-0.5B-Instruct",
        "rank": 16,
    }
    assert status["progressText"] == "100%"
    assert (status["startTime"], status["completionTime"]) == (T0, T1)


def test_success_without_serve_says_how_to_serve() -> None:
    status = compute_status(ftj(serve=None), job(succeeded=1, conditions=[cond("Complete")]), {}, T0)
    assert "finetuneJob: support-ft" in status["message"]


def test_progress_text_comes_from_the_runners_progress() -> None:
    status = compute_status(ftj(), job(active=1), {"progress": {"percent": 37, "step": 74}}, T0)
    assert status["progressText"] == "37%"


def test_condition_times_move_only_on_transitions() -> None:
    first = compute_status(ftj(), job(active=1), {}, T0)
    again = compute_status(ftj(), job(active=1), first, T1)
    assert [c["lastTransitionTime"] for c in again["conditions"]] == [T0, T0, T0]
    done = compute_status(ftj(), job(succeeded=1, conditions=[cond("Complete")]), again, T1)
    times = {c["type"]: c["lastTransitionTime"] for c in done["conditions"]}
    assert times == {"Complete": T1, "Failed": T0, "Suspended": T0}


def engine(
    name: str,
    labels: dict[str, str],
    *,
    preemptible: bool = True,
    replicas: int = 2,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
        "spec": {"preemptible": preemptible, "replicas": replicas},
    }


POOL = LabelSelector.model_validate({"matchLabels": {"pool": "gpu"}})


def test_selector_semantics() -> None:
    expr = LabelSelector.model_validate(
        {
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "x", "operator": "DoesNotExist"},
            ]
        }
    )
    assert selector_matches(expr, {"tier": "a"})
    assert not selector_matches(expr, {"tier": "a", "x": "1"})
    assert not selector_matches(expr, {"tier": "c"})
    assert not selector_matches(LabelSelector(), {"any": "thing"})


def test_pause_only_preemptible_matching_unpaused_engines() -> None:
    engines = [
        engine("a", {"pool": "gpu"}),
        engine("b", {"pool": "gpu"}, preemptible=False),
        engine("c", {"pool": "cpu"}),
        engine("d", {"pool": "gpu"}, annotations={PAUSED_BY: "other-job", REPLICAS_BEFORE_PAUSE: "3"}),
    ]
    patches = pause_patches("ft", POOL, engines)
    assert list(patches) == ["a"]
    assert patches["a"]["spec"] == {"replicas": 0}
    assert patches["a"]["metadata"]["annotations"] == {PAUSED_BY: "ft", REPLICAS_BEFORE_PAUSE: "2"}
    assert pause_patches("ft", None, engines) == {}


def test_restore_gives_back_what_this_job_took() -> None:
    engines = [
        engine("a", {}, replicas=0, annotations={PAUSED_BY: "ft", REPLICAS_BEFORE_PAUSE: "2"}),
        engine("d", {}, replicas=0, annotations={PAUSED_BY: "other", REPLICAS_BEFORE_PAUSE: "3"}),
    ]
    patches = restore_patches("ft", engines)
    assert list(patches) == ["a"]
    assert patches["a"]["spec"] == {"replicas": 2}
    assert patches["a"]["metadata"]["annotations"] == {PAUSED_BY: None, REPLICAS_BEFORE_PAUSE: None}
