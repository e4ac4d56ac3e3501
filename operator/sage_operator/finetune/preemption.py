"""Which engines a FinetuneJob pauses, and how they are given back (pure).

While a job holds its accelerators, LLMEngines in its namespace that match `spec.preemptEngines`
and are `preemptible: true` are scaled to zero. What to restore is remembered on each engine
(annotations), not in the operator's memory, so an operator restart loses nothing.
"""

from __future__ import annotations

from typing import Any

from sage_api import names
from sage_api.common import LabelSelector

PAUSED_BY = names.ANNOTATION_PAUSED_BY
REPLICAS_BEFORE_PAUSE = f"{names.GROUP}/replicas-before-pause"


def selector_matches(selector: LabelSelector, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches nothing here (never pause
    every engine of a namespace by accident)."""
    if not selector.match_labels and not selector.match_expressions:
        return False
    if any(labels.get(key) != value for key, value in (selector.match_labels or {}).items()):
        return False
    for requirement in selector.match_expressions or []:
        present, value = requirement.key in labels, labels.get(requirement.key)
        values = requirement.values or []
        ok = {
            "In": present and value in values,
            "NotIn": not present or value not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[requirement.operator]
        if not ok:
            return False
    return True


def _annotations(engine: dict[str, Any]) -> dict[str, str]:
    return (engine.get("metadata") or {}).get("annotations") or {}


def pause_patches(job_name: str, selector: LabelSelector | None, engines: list[dict[str, Any]]) -> dict[str, Any]:
    """Engine name -> merge patch that pauses it, for engines this job should pause and has not."""
    if selector is None:
        return {}
    patches: dict[str, Any] = {}
    for engine in engines:
        metadata, spec = engine.get("metadata") or {}, engine.get("spec") or {}
        if not spec.get("preemptible") or PAUSED_BY in _annotations(engine):
            continue  # not ours to pause, or already paused (by this job or another)
        if not selector_matches(selector, metadata.get("labels") or {}):
            continue
        patches[metadata["name"]] = {
            "metadata": {
                "annotations": {PAUSED_BY: job_name, REPLICAS_BEFORE_PAUSE: str(int(spec.get("replicas", 1)))}
            },
            "spec": {"replicas": 0},
        }
    return patches


def restore_patches(job_name: str, engines: list[dict[str, Any]]) -> dict[str, Any]:
    """Engine name -> merge patch that gives back the replicas this job took."""
    patches: dict[str, Any] = {}
    for engine in engines:
        annotations = _annotations(engine)
        if annotations.get(PAUSED_BY) != job_name:
            continue
        try:
            replicas = int(annotations.get(REPLICAS_BEFORE_PAUSE, "1"))
        except ValueError:
            replicas = 1
        patches[engine["metadata"]["name"]] = {
            "metadata": {"annotations": {PAUSED_BY: None, REPLICAS_BEFORE_PAUSE: None}},
            "spec": {"replicas": replicas},
        }
    return patches
