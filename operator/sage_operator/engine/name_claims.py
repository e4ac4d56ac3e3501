"""Which model names an engine claims, and which of them an older engine owns already (pure).

The gateway routes a name to the oldest engine claiming it (creationTimestamp, then
namespace/name); the operator tells the newer claimants, in a `NameConflict` condition, so a
second tenant never wonders why its engine gets no traffic for that name."""

from __future__ import annotations

from typing import Any


def _key(engine: dict[str, Any]) -> str:
    metadata = engine.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def _age(engine: dict[str, Any]) -> tuple[str, str]:
    """The gateway's order: older first; no timestamp sorts last; ties by namespace/name."""
    return (str((engine.get("metadata") or {}).get("creationTimestamp") or "~"), _key(engine))


def claimed_names(engine: dict[str, Any]) -> set[str]:
    """The served name (servedModelName, else metadata.name), the aliases and the adapters."""
    spec = engine.get("spec") or {}
    served = spec.get("servedModelName") or (engine.get("metadata") or {}).get("name")
    names = {str(served)} if served else set()
    names |= {str(alias) for alias in spec.get("aliases") or ()}
    names |= {str(adapter["name"]) for adapter in spec.get("adapters") or () if adapter.get("name")}
    return names


def taken_names(engine: dict[str, Any], engines: list[dict[str, Any]]) -> dict[str, str]:
    """Name -> the older engine (namespace/name) that owns it, for each name `engine` claims."""
    mine, age, key = claimed_names(engine), _age(engine), _key(engine)
    taken: dict[str, str] = {}
    for other in sorted(engines, key=_age):
        if _key(other) == key or _age(other) >= age:
            continue
        for name in sorted(mine & claimed_names(other)):
            taken.setdefault(name, _key(other))
    return taken


def sharing_a_name(engine: dict[str, Any], engines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of every other engine claiming a name `engine` claims."""
    mine, key = claimed_names(engine), _key(engine)
    found = []
    for other in engines:
        if _key(other) != key and mine & claimed_names(other):
            metadata = other.get("metadata") or {}
            found.append((str(metadata.get("namespace")), str(metadata.get("name"))))
    return found


def conflict_message(taken: dict[str, str]) -> str:
    return "; ".join(
        f"model name {name!r} belongs to the older LLMEngine {owner}: this engine gets no traffic for it"
        for name, owner in taken.items()
    )
