"""The status function: observed Deployment and pods -> phase, reasons, conditions, events."""

from __future__ import annotations

from typing import Any

import pytest

from sage_api.engine import Backend, LLMEngineStatus
from sage_api.names import ANNOTATION_SCALED
from sage_operator.core.metadata import ScaleNote
from sage_operator.engine.spec import InvalidSpec
from sage_operator.engine.status import (
    REFUSED_INVALID,
    Failure,
    Observed,
    compute_status,
    status_patch,
    transition_event,
)

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
IMAGE_PULL = {"containerStatuses": [{"name": "engine", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}


def deployment(ready: int = 0, replicas: int = 1, updated: int | None = None) -> dict[str, Any]:
    updated = replicas if updated is None else updated
    return {"status": {"readyReplicas": ready, "replicas": replicas, "updatedReplicas": updated}}


def pod(name: str = "p", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": name}, "spec": {}, "status": status}


def scheduled(ready: bool = False, containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": str(ready)}]
    return pod(phase="Running", conditions=conditions, containerStatuses=containers or [])


def observe(desired: int = 1, **fields: Any) -> Observed:
    return Observed(
        name="e",
        namespace="ns",
        generation=3,
        desired_replicas=desired,
        backend=Backend.TRANSFORMERS,
        model_names=["e", "alias"],
        **fields,
    )


def phase(observed: Observed) -> tuple[str, str]:
    status = compute_status(observed, None, T0)
    return status["phase"], status["message"]


def test_lifecycle_phases() -> None:
    assert phase(observe())[0] == "Pending"
    assert phase(observe(deployment=deployment(), pods=[pod(phase="Pending")]))[0] == "Deploying"
    assert phase(observe(deployment=deployment(), pods=[scheduled()]))[0] == "Loading"
    assert phase(observe(deployment=deployment(ready=1), pods=[scheduled(ready=True)]))[0] == "Ready"
    assert phase(observe(2, deployment=deployment(ready=1, replicas=2), pods=[scheduled(True), scheduled()]))[0] == (
        "Degraded"
    )
    assert phase(observe(0, deployment=deployment(replicas=0)))[0] == "Paused"


def test_crash_loop_carries_the_termination_message() -> None:
    crashing = {
        "name": "engine",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "model foo/bar not found"}},
    }
    got = phase(observe(deployment=deployment(), pods=[scheduled(containers=[crashing])]))
    assert got[0] == "Failed"
    assert "model foo/bar not found" in got[1]
    status = compute_status(observe(deployment=deployment(), pods=[scheduled(containers=[crashing])]), None, T0)
    assert status["conditions"][0]["reason"] == "CrashLoopBackOff"


@pytest.mark.parametrize(
    ("pod_status", "reason"),
    [
        (
            {"containerStatuses": [{"name": "engine", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]},
            "ImagePull",
        ),
        (
            {
                "containerStatuses": [
                    {
                        "name": "engine",
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                    }
                ]
            },
            "OOMKilled",
        ),
        (
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                    }
                ],
            },
            "Unschedulable",
        ),
    ],
)
def test_failure_reasons(pod_status: dict[str, Any], reason: str) -> None:
    status = compute_status(observe(deployment=deployment(), pods=[pod(**pod_status)]), None, T0)
    assert status["phase"] == "Failed"
    assert status["conditions"][0]["reason"].startswith(reason)


def test_invalid_spec_is_failed_and_names_the_field() -> None:
    status = compute_status(observe(invalid=InvalidSpec("spec.backend", "bad")), None, T0)
    assert (status["phase"], status["message"]) == ("Failed", "spec.backend: bad")
    assert status["conditions"][0]["reason"] == "InvalidSpec"


def test_status_fields_and_wire_format_match_the_crd_model() -> None:
    status = compute_status(
        observe(deployment=deployment(ready=1), pods=[scheduled(True)], loaded_adapters=["bot"]), None, T0
    )
    assert status["ready"] == "1/1"
    assert status["endpoint"] == "http://e.ns.svc:8000"
    assert status["selector"] == "sage.ai/engine=e"
    assert status["servedModels"] == ["e", "alias", "bot"]
    assert status["observedGeneration"] == 3
    assert status["backend"] == "transformers"
    LLMEngineStatus.model_validate(status)  # the CRD's own model accepts it


def test_transition_time_moves_only_on_a_real_transition() -> None:
    loading = observe(deployment=deployment(), pods=[scheduled()])
    first = compute_status(loading, None, T0)
    again = compute_status(loading, first, T1)
    assert again == first
    assert status_patch(first, again) is None
    ready = compute_status(observe(deployment=deployment(ready=1), pods=[scheduled(True)]), first, T1)
    times = {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]}
    assert times == {"Ready": T1, "Progressing": T1}
    assert status_patch(first, ready) == ready


def test_one_event_per_phase_transition() -> None:
    loading = compute_status(observe(deployment=deployment(), pods=[scheduled()]), None, T0)
    event = transition_event(None, loading)
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "Loading")
    assert transition_event(loading, loading) is None
    failed = compute_status(observe(invalid=InvalidSpec("spec.x", "bad")), loading, T1)
    event = transition_event(loading, failed)
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "InvalidSpec")


def test_rolling_update_keeps_ready_and_reports_progress() -> None:
    status = compute_status(observe(deployment=deployment(ready=1, updated=0), pods=[scheduled(True)]), None, T0)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert status["phase"] == "Ready"
    assert conditions["Progressing"] == ("True", "RollingUpdate")


def test_a_refused_child_is_reported() -> None:
    invalid = compute_status(
        observe(refused=Failure(REFUSED_INVALID, "spec.template.spec.nodeSelector: Invalid")), None, T0
    )
    assert (invalid["phase"], invalid["conditions"][0]["reason"]) == ("Failed", REFUSED_INVALID)
    quota = compute_status(observe(refused=Failure("ChildRefused", "exceeded quota")), None, T0)
    assert (quota["phase"], quota["message"]) == ("Pending", "exceeded quota")


def test_pods_that_cannot_be_created_fail_the_engine_naming_why() -> None:
    refused = deployment()
    refused["status"]["conditions"] = [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": 'pods "e-1" is forbidden: x'}
    ]
    status = compute_status(observe(deployment=refused), None, T0)
    assert (status["phase"], status["conditions"][0]["reason"]) == ("Failed", "FailedCreate")
    assert status["message"] == 'pods cannot be created: pods "e-1" is forbidden: x'


def test_an_unschedulable_pod_says_which_devices_it_needs() -> None:
    """The scheduler may name a node selector before the missing GPU; the message names both."""
    unschedulable = pod(
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
            }
        ],
    )
    limits = {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"}
    unschedulable["spec"] = {"containers": [{"name": "engine", "resources": {"limits": limits}}]}
    status = compute_status(observe(deployment=deployment(), pods=[unschedulable]), None, T0)
    assert status["conditions"][0]["reason"] == "Unschedulable"
    assert status["message"].startswith("pod p: needs nvidia.com/gpu: 1; 0/1 nodes are available: 1 node(s)")


def test_the_autoscalers_last_change_is_the_condition_scaled() -> None:
    assert [c["type"] for c in compute_status(observe(), None, T0)["conditions"]] == ["Ready", "Progressing"]
    note = ScaleNote("ScaledToZero", "idle for 300s: 2 -> 0 replicas", T1)
    status = compute_status(observe(0, deployment=deployment(replicas=0), scaled=note), None, T0)
    assert status["message"] == "scaled to zero replicas: idle for 300s: 2 -> 0 replicas"
    (condition,) = [c for c in status["conditions"] if c["type"] == "Scaled"]
    assert condition == {
        "type": "Scaled",
        "status": "True",
        "reason": "ScaledToZero",
        "message": "ScaledToZero: idle for 300s: 2 -> 0 replicas",
        "lastTransitionTime": T1,
        "observedGeneration": 3,
    }
    LLMEngineStatus.model_validate(status)


def test_a_scale_note_survives_its_annotation_and_a_bad_one_is_ignored() -> None:
    note = ScaleNote("ScaledUp", "4.0 requests in flight", T0)
    assert ScaleNote.of({"annotations": {ANNOTATION_SCALED: note.encode()}}) == note
    assert ScaleNote.of({"annotations": {ANNOTATION_SCALED: "not json"}}) is None
    assert ScaleNote.of({"annotations": {ANNOTATION_SCALED: '{"reason": "x"}'}}) is None
    assert ScaleNote.of({}) is None
