"""What the operator writes on everything it creates, and the Events it posts (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sage_api import names
from sage_operator.core.kinds import Owner

EVENT_MESSAGE_LIMIT = 1024
MANAGED_SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
"""Selects every child the operator made: for a kind that both controllers create (ServiceAccounts),
which the object cache watches with one selector."""


def restricted_pod_security() -> dict[str, Any]:
    """The pod securityContext of the restricted Pod Security level: the images' own non-root
    user, which also owns the pod's volumes through fsGroup."""
    return {
        "runAsNonRoot": True,
        "runAsUser": names.IMAGE_USER_ID,
        "runAsGroup": names.IMAGE_USER_ID,
        "fsGroup": names.IMAGE_USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    """The container securityContext of the restricted level: no privilege escalation, no capabilities."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def child_labels(owner: Owner, name: str) -> dict[str, str]:
    return {
        names.LABEL_NAME: owner.app,
        names.LABEL_INSTANCE: name,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_COMPONENT: owner.component,
        owner.label: name,
    }


def owner_reference(owner: Owner, metadata: dict[str, Any]) -> dict[str, Any]:
    """The controller reference that lets the garbage collector remove a child with its owner."""
    return {
        "apiVersion": owner.kind.api_version,
        "kind": owner.kind.kind,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(owner: Owner, metadata: dict[str, Any], name: str | None = None, **extra: Any) -> dict[str, Any]:
    """Metadata of a child of the object with `metadata`: its name (default: the owner's), the
    owner's namespace, the labels and the owner reference."""
    return {
        "name": name or metadata["name"],
        "namespace": metadata["namespace"],
        "labels": child_labels(owner, metadata["name"]),
        "ownerReferences": [owner_reference(owner, metadata)],
        **extra,
    }


def render_event(
    owner: Owner, metadata: dict[str, Any], *, event_type: str, reason: str, message: str, now: str, reporter: str
) -> dict[str, Any]:
    """A core/v1 Event about the object with `metadata` (a phase transition)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": owner.kind.api_version,
            "kind": owner.kind.kind,
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid", ""),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:EVENT_MESSAGE_LIMIT],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": names.MANAGED_BY},
        "reportingComponent": names.MANAGED_BY,
        "reportingInstance": reporter,
    }


def covers(observed: Any, desired: Any) -> bool:
    """Whether `observed` already holds every field of `desired` with its value (lists item by
    item): then a server-side apply of `desired` would change nothing and can be skipped."""
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(
            key in observed and covers(observed[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(covers(seen, wanted) for seen, wanted in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)


@dataclass(frozen=True)
class ScaleNote:
    """The autoscaler's last change of an engine, kept in its annotation `sage.ai/scaled`."""

    reason: str
    """ScaledUp, ScaledDown, ScaledToZero or ScalingUp."""
    message: str
    time: str

    def encode(self) -> str:
        return json.dumps({"reason": self.reason, "message": self.message, "time": self.time})

    @staticmethod
    def of(metadata: dict[str, Any]) -> ScaleNote | None:
        """The note on an engine's metadata; None when absent or not one."""
        raw = (metadata.get("annotations") or {}).get(names.ANNOTATION_SCALED)
        try:
            fields = json.loads(raw) if raw else None
            return ScaleNote(str(fields["reason"]), str(fields["message"]), str(fields["time"])) if fields else None
        except (ValueError, TypeError, KeyError):
            return None
