"""Defaulting and cross-field checks the schema cannot express (pure).

Shared by the operator (which renders pods) and local mode (which starts processes), so both
resolve an LLMEngine the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sage_api.engine import BACKENDS_FOR_KIND, Backend, EngineKind, LLMEngineSpec


@dataclass(frozen=True)
class InvalidSpec(ValueError):
    """A combination of fields that cannot run; `field` is the path to fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def resolve_backend(spec: LLMEngineSpec) -> Backend:
    """spec.backend, else embedding -> sentence-transformers; llm -> vllm with GPUs, transformers without."""
    if spec.backend is not None:
        return spec.backend
    if spec.engine_kind is EngineKind.EMBEDDING:
        return Backend.SENTENCE_TRANSFORMERS
    gpus = spec.resources.gpus if spec.resources else 0
    return Backend.VLLM if gpus > 0 else Backend.TRANSFORMERS


def embedding_flags(spec: LLMEngineSpec) -> list[str]:
    """The `python -m sage_engine` flags of spec.embedding (none when it is unset, so that engines
    without it keep their command line, and their pods)."""
    if spec.embedding is None:
        return []
    return ["--embedding-runtime", spec.embedding.runtime.value]


def served_model_name(spec: LLMEngineSpec, engine_name: str) -> str:
    return spec.served_model_name or engine_name


def check_spec(spec: LLMEngineSpec) -> None:
    """Raises InvalidSpec for combinations that cannot run. The API server refuses these at
    admission too (the CRD's CEL rules); local mode and objects stored before a rule existed
    reach this check."""
    backend = resolve_backend(spec)
    allowed = BACKENDS_FOR_KIND[spec.engine_kind]
    if backend not in allowed:
        names = ", ".join(sorted(b.value for b in allowed))
        msg = f"backend {backend.value} cannot serve engineKind {spec.engine_kind.value}; use one of: {names}"
        raise InvalidSpec("spec.backend", msg)
    gpus = spec.resources.gpus if spec.resources else 0
    if backend is Backend.VLLM and gpus == 0:
        raise InvalidSpec("spec.resources.gpus", "the vllm backend needs at least one GPU; use transformers on CPU")
    if spec.adapters and spec.engine_kind is EngineKind.EMBEDDING:
        raise InvalidSpec("spec.adapters", "LoRA adapters apply to llm engines only")
    if spec.embedding and backend is not Backend.SENTENCE_TRANSFORMERS:
        msg = "embedding options apply to embedding engines on the sentence-transformers backend"
        raise InvalidSpec("spec.embedding", msg)
