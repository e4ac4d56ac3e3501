"""Backend defaulting and the cross-field checks."""

from __future__ import annotations

import pytest

from sage_api.defaults import InvalidSpec, check_spec, resolve_backend, served_model_name
from sage_api.engine import Backend, LLMEngineSpec


def spec(**fields: object) -> LLMEngineSpec:
    return LLMEngineSpec.model_validate({"model": "m", **fields})


@pytest.mark.parametrize(
    ("fields", "backend"),
    [
        ({}, Backend.TRANSFORMERS),
        ({"resources": {"gpus": 1}}, Backend.VLLM),
        ({"engineKind": "embedding"}, Backend.SENTENCE_TRANSFORMERS),
        ({"engineKind": "embedding", "resources": {"gpus": 2}}, Backend.SENTENCE_TRANSFORMERS),
        ({"backend": "deterministic"}, Backend.DETERMINISTIC),
    ],
)
def test_backend_defaults_from_kind_and_gpus(fields: dict[str, object], backend: Backend) -> None:
    assert resolve_backend(spec(**fields)) is backend


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"backend": "sentence-transformers"}, "spec.backend"),
        ({"engineKind": "embedding", "backend": "transformers"}, "spec.backend"),
        ({"backend": "vllm"}, "spec.resources.gpus"),
        ({"engineKind": "embedding", "adapters": [{"name": "a", "source": "x"}]}, "spec.adapters"),
        ({"embedding": {"runtime": "onnx"}}, "spec.embedding"),
        ({"engineKind": "embedding", "backend": "deterministic", "embedding": {"runtime": "onnx"}}, "spec.embedding"),
    ],
)
def test_invalid_combinations_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec) as error:
        check_spec(spec(**fields))
    assert error.value.field == field
    assert field in str(error.value)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"backend": "deterministic", "engineKind": "embedding"},
        {"backend": "vllm", "resources": {"gpus": 1}},
        {"engineKind": "embedding", "embedding": {"runtime": "onnx"}},
    ],
)
def test_valid_combinations_pass(fields: dict[str, object]) -> None:
    check_spec(spec(**fields))


def test_served_name_defaults_to_metadata_name() -> None:
    assert served_model_name(spec(), "qwen") == "qwen"
    assert served_model_name(spec(servedModelName="q"), "qwen") == "q"
