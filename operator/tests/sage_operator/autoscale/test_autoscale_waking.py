"""What the autoscaler says of an engine a gateway woke from zero: once per wake, while requests wait."""

from __future__ import annotations

from typing import Any

from sage_api.names import ANNOTATION_SCALED
from sage_operator.autoscale.loop import LoadReadings, waking_message
from sage_operator.core.metadata import ScaleNote


def engine(replicas: int = 1, ready: int = 0, note: ScaleNote | None = None) -> dict[str, Any]:
    annotations = {ANNOTATION_SCALED: note.encode()} if note else {}
    return {
        "metadata": {"annotations": annotations},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


def test_waiting_requests_are_told_once_per_wake() -> None:
    assert waking_message(engine(), held=3) == "3 requests waiting for a replica to be ready"
    assert waking_message(engine(), held=0) is None
    assert waking_message(engine(ready=1), held=3) is None
    assert waking_message(engine(replicas=0), held=3) is None
    told = ScaleNote("ScalingUp", "3 requests waiting", "t")
    assert waking_message(engine(note=told), held=5) is None
    after_zero = ScaleNote("ScaledToZero", "idle", "t")
    assert waking_message(engine(note=after_zero), held=1) == "1 request waiting for a replica to be ready"


def test_held_requests_are_summed_over_gateways() -> None:
    readings = LoadReadings()
    readings.add({"engines": {"ns/a": {"inflight": 1, "held": 2, "requests": 5}}})
    readings.add({"engines": {"ns/a": {"inflight": 0, "held": 1, "requests": 1}}})
    assert (readings.held["ns/a"], readings.demand["ns/a"], readings.requests["ns/a"]) == (3, 4.0, 6)
