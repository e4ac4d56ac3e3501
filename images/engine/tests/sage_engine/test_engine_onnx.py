"""The ONNX runtime of the sentence-transformers backend on the packaged all-MiniLM-L6-v2: a real
engine process serving torch's vectors, and the export cache (reused while the model's files are
unchanged, exported again when they change)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from sage_engine.backends.embedding_batches import length_sorted_chunks, padded
from sage_engine.backends.onnx_backend import OnnxEncoder, load_onnx_backend, lowest_cosine
from sage_engine.backends.onnx_export import GRAPH_FILE, cached_export, model_files_digest
from sage_engine.backends.sentence_transformers_backend import load_model, tensor_features
from sage_engine.cli import parse_settings
from sage_harness.engines import EngineProcess

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply on Monday.",
    "Kubernetes restarts containers that fail their liveness probe. " * 12,
    "hi",
]


# --- pure parts --------------------------------------------------------------------------------
def test_chunks_run_longest_first_and_skip_empty_and_over_length_inputs() -> None:
    counts = [3, 0, 9, 5, 300, 7]
    assert list(length_sorted_chunks(counts, limit=256, size=2)) == [[2, 5], [3, 0]]


def test_padding_marks_the_real_tokens() -> None:
    ids, mask = padded([[101, 7, 102], [101, 102]], pad_id=0)
    assert ids.tolist() == [[101, 7, 102], [101, 102, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert ids.dtype == mask.dtype == np.int64


def test_lowest_cosine_finds_the_worst_row() -> None:
    expected = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    served = np.array([[2.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    assert lowest_cosine(expected, served) == pytest.approx(2**-0.5)


def test_digest_follows_contents_and_names_but_not_hidden_folders(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    first = model_files_digest(tmp_path)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "lock").write_text("hub client state")
    assert model_files_digest(tmp_path) == first
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    changed = model_files_digest(tmp_path)
    (tmp_path / "config.json").rename(tmp_path / "other.json")
    assert len({first, changed, model_files_digest(tmp_path)}) == 3


def test_runtime_option_on_the_command_line_and_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--backend", "sentence-transformers", "--model", "m"]
    assert parse_settings(base).embedding_runtime == "torch"
    assert parse_settings([*base, "--embedding-runtime", "onnx"]).embedding_runtime == "onnx"
    monkeypatch.setenv("SAGE_ENGINE_EMBEDDING_RUNTIME", "onnx")
    assert parse_settings(base).embedding_runtime == "onnx"
    with pytest.raises(SystemExit):
        parse_settings([*base, "--embedding-runtime", "tensorrt"])


# --- the export cache, in this process ---------------------------------------------------------
@pytest.fixture(scope="module")
def minilm(minilm_path: Path) -> SentenceTransformer:
    return load_model(str(minilm_path), threads=1)


@pytest.mark.slow
def test_export_is_reused_until_the_model_files_change(
    minilm: SentenceTransformer, minilm_path: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "onnx"
    names, _ = tensor_features(minilm)
    first = cached_export(minilm, minilm_path, cache, names)
    assert first.exported
    assert first.graph.is_file()
    assert not minilm.training, "exporting must leave the model's dropout off"
    written = first.graph.stat().st_mtime_ns

    again = cached_export(minilm, minilm_path, cache, names)
    assert (again.exported, again.folder) == (False, first.folder)
    assert again.graph.stat().st_mtime_ns == written
    assert [p.name for p in cache.iterdir()] == [first.folder.name], "no scratch folders left behind"

    changed = tmp_path / "model"
    shutil.copytree(minilm_path, changed)
    (changed / "README.md").write_text("a new revision of the model card\n")
    moved = cached_export(minilm, changed, cache, names)
    assert moved.exported
    assert moved.folder != first.folder
    assert (moved.folder / GRAPH_FILE).is_file()
    assert first.graph.stat().st_mtime_ns == written


@pytest.mark.slow
def test_a_lone_batch_runs_on_all_threads_with_the_same_vectors(minilm_path: Path, tmp_path: Path) -> None:
    backend = load_onnx_backend(str(minilm_path), threads=1, cache_root=tmp_path, all_threads=2)
    encoder = backend.encoder
    assert isinstance(encoder, OnnxEncoder)
    assert encoder.whole is not encoder.shared
    assert encoder.whole.get_session_options().intra_op_num_threads == 2
    assert encoder.shared.get_session_options().intra_op_num_threads == 1
    alone = backend.embed(list(SENTENCES), alone=True)
    shared = backend.embed(list(SENTENCES))
    assert alone.token_counts == shared.token_counts
    assert np.abs(alone.vectors - shared.vectors).max() < 1e-5


# --- a real engine process ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_engine(minilm_path: Path, onnx_cache: Path) -> Iterator[EngineProcess]:
    flags = ("--embedding-runtime", "onnx", "--onnx-cache", str(onnx_cache))
    with EngineProcess("sentence-transformers", str(minilm_path), served_model_name="minilm", extra_args=flags) as e:
        yield e


@pytest.fixture(scope="module")
def reference(minilm_path: Path) -> SentenceTransformer:
    torch.set_num_threads(1)
    return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.mark.engine
@pytest.mark.slow
def test_onnx_engine_serves_torchs_vectors(onnx_engine: EngineProcess, reference: SentenceTransformer) -> None:
    response = httpx.post(f"{onnx_engine.base_url}/v1/embeddings", json={"input": SENTENCES}, timeout=60)
    body = response.json()
    served = np.array([item["embedding"] for item in body["data"]], dtype=np.float32)
    expected = reference.encode(SENTENCES)
    assert served.shape == (len(SENTENCES), 384)
    assert lowest_cosine(expected, served) >= 0.9999
    tokens = sum(len(ids) for ids in reference.tokenizer(SENTENCES)["input_ids"])
    assert body["usage"]["prompt_tokens"] == tokens


@pytest.mark.engine
@pytest.mark.slow
def test_onnx_engine_refuses_over_length_input_like_torch(onnx_engine: EngineProcess) -> None:
    response = httpx.post(f"{onnx_engine.base_url}/v1/embeddings", json={"input": "word " * 400}, timeout=60)
    assert response.status_code == 400
    assert "at most 256 tokens" in response.json()["error"]["message"]


@pytest.mark.engine
@pytest.mark.slow
def test_a_restarted_engine_reuses_the_export(minilm_path: Path, onnx_engine: EngineProcess, onnx_cache: Path) -> None:
    (folder,) = [p for p in onnx_cache.iterdir() if not p.name.startswith(".")]
    written = (folder / GRAPH_FILE).stat().st_mtime_ns
    flags = ("--embedding-runtime", "onnx", "--onnx-cache", str(onnx_cache))
    with EngineProcess("sentence-transformers", str(minilm_path), extra_args=flags) as again:
        response = httpx.post(f"{again.base_url}/v1/embeddings", json={"input": SENTENCES[:2]}, timeout=60)
        assert response.status_code == 200
        assert "reusing the export" in again.log()
    assert [p.name for p in onnx_cache.iterdir()] == [folder.name]
    assert (folder / GRAPH_FILE).stat().st_mtime_ns == written
