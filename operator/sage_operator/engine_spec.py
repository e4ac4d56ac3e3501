"""What an LLMEngine spec means once defaults are applied, and which combinations are invalid (pure).

The CRD schema refuses malformed fields; the checks here catch combinations it cannot express
(e.g. `sentence-transformers` with `engineKind: llm`). Each problem names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sage_api.engine import Backend, EngineKind, LLMEngineSpec

# Backends and the engine kinds they can serve; deterministic is a test backend for both.
SERVES: dict[Backend, frozenset[EngineKind]] = {
    Backend.VLLM: frozenset({EngineKind.LLM, EngineKind.EMBEDDING}),
    Backend.TRANSFORMERS: frozenset({EngineKind.LLM}),
    Backend.SENTENCE_TRANSFORMERS: frozenset({EngineKind.EMBEDDING}),
    Backend.DETERMINISTIC: frozenset({EngineKind.LLM, EngineKind.EMBEDDING}),
}


@dataclass(frozen=True)
class InvalidSpec:
    """A spec the operator will not deploy; `field` is the JSON path of the offending field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def gpus(spec: LLMEngineSpec) -> int:
    return spec.resources.gpus if spec.resources else 0


def resolve_backend(spec: LLMEngineSpec) -> Backend:
    """The explicit backend, else embedding -> sentence-transformers, llm -> vllm with GPUs or transformers."""
    if spec.backend is not None:
        return spec.backend
    if spec.engine_kind is EngineKind.EMBEDDING:
        return Backend.SENTENCE_TRANSFORMERS
    return Backend.VLLM if gpus(spec) > 0 else Backend.TRANSFORMERS


def served_name(spec: LLMEngineSpec, engine_name: str) -> str:
    return spec.served_model_name or engine_name


def model_names(spec: LLMEngineSpec, engine_name: str) -> list[str]:
    """The served name first, then the aliases that differ from it."""
    names = [served_name(spec, engine_name)]
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
    backend = resolve_backend(spec)
    if spec.engine_kind not in SERVES[backend]:
        kinds = " or ".join(sorted(kind.value for kind in SERVES[backend]))
        fitting = sorted(b.value for b, served in SERVES.items() if spec.engine_kind in served)
        return InvalidSpec(
            "spec.backend",
            f"backend {backend.value} serves engineKind {kinds}, not {spec.engine_kind.value}; "
            f"for {spec.engine_kind.value} use one of {', '.join(fitting)}",
        )
    if backend is Backend.VLLM and gpus(spec) == 0:
        return InvalidSpec("spec.resources.gpus", "backend vllm needs at least one GPU (resources.gpus >= 1)")
    if spec.adapters and spec.engine_kind is not EngineKind.LLM:
        return InvalidSpec("spec.adapters", "LoRA adapters need engineKind llm")
    if spec.adapters and backend is Backend.SENTENCE_TRANSFORMERS:
        return InvalidSpec("spec.adapters", "backend sentence-transformers cannot load LoRA adapters")
    taken = set(model_names(spec, engine_name))
    for index, adapter in enumerate(spec.adapters or []):
        if adapter.name in taken:
            return InvalidSpec(
                f"spec.adapters[{index}].name",
                f"{adapter.name!r} is already the served name or an alias of this engine",
            )
    return None
