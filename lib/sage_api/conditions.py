"""Status conditions by the Kubernetes API conventions (pure): `lastTransitionTime` moves only
when `status` really changes."""

from __future__ import annotations

from typing import Any


def set_condition(
    previous: list[dict[str, Any]] | None,
    type_: str,
    *,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """The new condition of `type_`; True/False/Unknown from `status`, transition time kept from
    `previous` when the status is unchanged."""
    wire_status = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in previous or [] if c.get("type") == type_), None)
    changed = old is None or old.get("status") != wire_status
    condition: dict[str, Any] = {
        "type": type_,
        "status": wire_status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed or old is None else old.get("lastTransitionTime", now),
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    return condition


def merge_conditions(previous: list[dict[str, Any]] | None, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`previous` with each of `updates` replacing the condition of its type (order kept)."""
    by_type = {c["type"]: c for c in updates}
    merged = [by_type.pop(c["type"], c) for c in previous or [] if "type" in c]
    return merged + list(by_type.values())


def condition_is(conditions: list[dict[str, Any]] | None, type_: str, status: str = "True") -> bool:
    return any(c.get("type") == type_ and c.get("status") == status for c in conditions or [])
