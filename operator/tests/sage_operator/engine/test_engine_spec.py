"""Backend defaulting and InvalidSpec detection (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from sage_api.engine import Backend, LLMEngineSpec
from sage_operator.engine.spec import InvalidSpec, check_spec, model_names, parse_spec, resolve_backend


def spec(**fields: Any) -> LLMEngineSpec:
    return LLMEngineSpec.model_validate({"model": "m", **fields})


@pytest.mark.parametrize(
    ("fields", "backend"),
    [
        ({"engineKind": "embedding"}, Backend.SENTENCE_TRANSFORMERS),
        ({"engineKind": "llm"}, Backend.TRANSFORMERS),
        ({"engineKind": "llm", "resources": {"gpus": 2}}, Backend.VLLM),
        ({"engineKind": "embedding", "resources": {"gpus": 1}}, Backend.SENTENCE_TRANSFORMERS),
        ({"backend": "deterministic", "resources": {"gpus": 1}}, Backend.DETERMINISTIC),
    ],
)
def test_backend_defaults(fields: dict[str, Any], backend: Backend) -> None:
    assert resolve_backend(spec(**fields)) is backend


@pytest.mark.parametrize("kind", ["llm", "embedding"])
def test_deterministic_serves_both_kinds(kind: str) -> None:
    assert check_spec(spec(backend="deterministic", engineKind=kind), "e") is None


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"backend": "sentence-transformers", "engineKind": "llm"}, "spec.backend", "cannot serve engineKind llm"),
        ({"backend": "transformers", "engineKind": "embedding"}, "spec.backend", "cannot serve engineKind embedding"),
        ({"backend": "vllm"}, "spec.resources.gpus", "at least one GPU"),
        (
            {"engineKind": "embedding", "adapters": [{"name": "a", "source": "pvc://c/a"}]},
            "spec.adapters",
            "llm engines only",
        ),
        ({"aliases": ["x"], "adapters": [{"name": "x", "source": "pvc://c/a"}]}, "spec.adapters[0].name", "alias"),
    ],
)
def test_invalid_combinations_name_the_field(fields: dict[str, Any], field: str, words: str) -> None:
    problem = check_spec(spec(**fields), "e")
    assert problem is not None
    assert problem.field == field
    assert words in problem.message


def test_parse_spec_turns_model_errors_into_invalid_spec() -> None:
    problem = parse_spec({"model": "m", "replicas": -1})
    assert isinstance(problem, InvalidSpec)
    assert problem.field == "spec.replicas"
    assert isinstance(parse_spec({"model": "m"}), LLMEngineSpec)


def test_model_names_put_the_served_name_first_without_duplicates() -> None:
    assert model_names(spec(aliases=["a", "e", "b"]), "e") == ["e", "a", "b"]
    assert model_names(spec(servedModelName="s"), "e") == ["s"]
