"""What an LLMEngine spec means to the operator (pure): the shared defaulting and cross-field
checks of `sage_api.defaults`, plus the checks only a running operator needs (adapter names that
collide with model names, adapters on a backend that cannot load them). Problems name the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sage_api.defaults import InvalidSpec, resolve_backend, served_model_name
from sage_api.defaults import check_spec as check_shared
from sage_api.engine import Backend, LLMEngineSpec

__all__ = ["InvalidSpec", "check_spec", "gpus", "model_names", "parse_spec", "resolve_backend"]


def gpus(spec: LLMEngineSpec) -> int:
    return spec.resources.gpus if spec.resources else 0


def model_names(spec: LLMEngineSpec, engine_name: str) -> list[str]:
    """The served name first, then the aliases that differ from it."""
    names = [served_model_name(spec, engine_name)]
    names += [alias for alias in spec.aliases or [] if alias not in names]
    return names


def parse_spec(raw: Any) -> LLMEngineSpec | InvalidSpec:
    """The spec as the operator's models read it; a spec the schema let through but the models refuse
    (an older CRD, a hand-made object) becomes an InvalidSpec naming the first bad field."""
    try:
        return LLMEngineSpec.model_validate(raw or {})
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        return InvalidSpec(f"spec.{location}" if location else "spec", first["msg"])


def check_spec(spec: LLMEngineSpec, engine_name: str) -> InvalidSpec | None:
    """The first combination the schema cannot refuse but no engine can serve, or None."""
    try:
        check_shared(spec)
    except InvalidSpec as problem:
        return problem
    if spec.adapters and resolve_backend(spec) is Backend.SENTENCE_TRANSFORMERS:
        return InvalidSpec("spec.adapters", "backend sentence-transformers cannot load LoRA adapters")
    taken = set(model_names(spec, engine_name))
    for index, adapter in enumerate(spec.adapters or []):
        if adapter.name in taken:
            return InvalidSpec(
                f"spec.adapters[{index}].name",
                f"{adapter.name!r} is already the served name or an alias of this engine",
            )
    return None
