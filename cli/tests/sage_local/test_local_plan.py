"""Local mode's manifest reading and process planning (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_api.engine import Backend
from sage_harness.repo import REPO_ROOT
from sage_local.manifests import ManifestError, expand_environment, load_engines, parse_engines
from sage_local.plan import example_request, plan_engines

ENGINE = """apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}}}
spec: {spec}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_local_examples_plan_to_engine_processes() -> None:
    loaded, notes = load_engines([REPO_ROOT / "examples" / "local"], environ={})
    planned = plan_engines(loaded, base_port=20000, host="127.0.0.1", python="py")
    by_name = {engine.name: engine for engine in planned}
    assert set(by_name) == {"chat", "minilm"}
    assert notes == []
    assert by_name["minilm"].backend is Backend.SENTENCE_TRANSFORMERS
    assert by_name["chat"].backend is Backend.TRANSFORMERS
    assert by_name["chat"].model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert sorted(e.port for e in planned) == [20000, 20001]
    argv = by_name["minilm"].argv
    assert argv[:3] == ("py", "-m", "sage_engine")
    assert argv[argv.index("--port") + 1] == str(by_name["minilm"].port)
    assert "text-embedding-3-small" in by_name["minilm"].names


def test_environment_expansion() -> None:
    assert expand_environment("m: ${A:-x}", {}) == "m: x"
    assert expand_environment("m: ${A:-x}", {"A": "y"}) == "m: y"
    with pytest.raises(ManifestError, match=r"\$\{B\} is not set"):
        expand_environment("m: ${B}", {})


def test_invalid_manifest_names_file_engine_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", ENGINE.format(name="bad", spec="{model: m, replicas: -2}"))
    with pytest.raises(ManifestError) as error:
        load_engines([path], environ={})
    assert "bad.yaml" in str(error.value)
    assert "LLMEngine bad" in str(error.value)
    assert "spec.replicas" in str(error.value)


def test_unknown_fields_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.yaml", ENGINE.format(name="t", spec="{model: m, replica: 2}"))
    with pytest.raises(ManifestError, match=r"spec\.replica"):
        load_engines([path], environ={})


def test_other_kinds_are_noted_and_skipped(tmp_path: Path) -> None:
    text = ENGINE.format(name="a", spec="{model: m, backend: deterministic}") + "---\nkind: FinetuneJob\n"
    engines, notes = parse_engines(text, tmp_path / "x.yaml")
    assert [e.name for e in engines] == ["a"]
    assert "skipping FinetuneJob" in notes[0]


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", ENGINE.format(name="same", spec="{model: m}"))
    write(tmp_path, "b.yaml", ENGINE.format(name="same", spec="{model: m}"))
    with pytest.raises(ManifestError, match="defined twice"):
        load_engines([tmp_path], environ={})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{model: 'pvc://claim/x'}", "pvc:// needs a cluster"),
        ("{model: m, backend: vllm, resources: {gpus: 1}}", "vllm needs GPUs"),
        ("{model: m, backend: sentence-transformers}", "spec.backend"),
    ],
)
def test_engines_that_cannot_run_locally(tmp_path: Path, spec: str, message: str) -> None:
    loaded, _ = load_engines([write(tmp_path, "e.yaml", ENGINE.format(name="e", spec=spec))], environ={})
    with pytest.raises(ManifestError, match=message):
        plan_engines(loaded, base_port=1, host="h", python="p")


def test_relative_model_paths_resolve_against_the_manifest(tmp_path: Path) -> None:
    path = write(tmp_path, "e.yaml", ENGINE.format(name="e", spec="{model: ./weights, engineKind: embedding}"))
    loaded, _ = load_engines([path], environ={})
    [engine] = plan_engines(loaded, base_port=1, host="h", python="p")
    assert engine.model == str(tmp_path / "weights")


def test_missing_paths_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_engines([tmp_path / "nope.yaml"], environ={})
    with pytest.raises(ManifestError, match="no manifests found"):
        load_engines([tmp_path], environ={})


def test_example_request_prefers_an_embedding_engine() -> None:
    loaded, _ = load_engines([REPO_ROOT / "examples" / "local"], environ={})
    planned = plan_engines(loaded, base_port=1, host="h", python="p")
    request = example_request("http://127.0.0.1:9", planned)
    assert "/v1/embeddings" in request
    assert '"model": "minilm"' in request


def test_embedding_runtime_is_passed_to_the_engine(tmp_path: Path) -> None:
    spec = "{model: m, engineKind: embedding, embedding: {runtime: onnx}}"
    loaded, _ = load_engines([write(tmp_path, "e.yaml", ENGINE.format(name="e", spec=spec))], environ={})
    (planned,) = plan_engines(loaded, base_port=20000, host="127.0.0.1", python="py")
    assert planned.argv[planned.argv.index("--embedding-runtime") + 1] == "onnx"
