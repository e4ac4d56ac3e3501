"""The sentence-transformers backend with ONNX Runtime computing the vectors (`--embedding-runtime onnx`).

Tokenization, batching and chunking are the sentence-transformers backend's own; only the
`Encoder` differs: an ONNX Runtime session on the model's cached export (`onnx_export`). The torch
model is loaded to read its tokenizer and modules, to export on a cache miss, and to check the
export on every load: an export whose vectors are not torch's (cosine below 0.9999) is refused.
After loading only the tokenizer and the sessions are kept.

Every batch worker calls the one session (`run` is thread-safe), each run on the worker's share
of the container's CPUs (intra-op threads); a batch that runs alone (a lone client) takes a second
session on all of them, so that one client's latency is that of the whole container.

The graph is optimised at ORT_ENABLE_ALL; its portable part (ORT_ENABLE_EXTENDED: the fusions,
not the CPU-specific layouts) is saved in the cache, so that later loads start from the optimised
graph.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from sentence_transformers import SentenceTransformer

from sage_engine.backends.embedding_batches import TokenMatrix, padded
from sage_engine.backends.onnx_export import PROBE_TEXTS, OnnxExport, cached_export, model_folder
from sage_engine.backends.sentence_transformers_backend import (
    Encoder,
    SentenceTransformersBackend,
    TorchEncoder,
    load_model,
    tensor_features,
)

log = logging.getLogger("sage_engine")

MIN_COSINE = 0.9999
CHECK_TEXTS = (*PROBE_TEXTS, "hi", "Kubernetes restarts containers that fail their liveness probe. " * 8)


class OnnxEncoder:
    """ONNX Runtime sessions on one graph: `shared` with a worker's share of the CPUs, and `whole`
    with all of them for a batch that runs alone (a lone client: its latency is all there is).
    Feeds each the token tensors its graph takes."""

    def __init__(self, shared: ort.InferenceSession, whole: ort.InferenceSession | None = None) -> None:
        self.shared, self.whole = shared, whole or shared
        self.input_names = [tensor.name for tensor in shared.get_inputs()]

    def __call__(
        self, input_ids: TokenMatrix, attention_mask: TokenMatrix, *, alone: bool = False
    ) -> npt.NDArray[np.float32]:
        tensors = {"input_ids": input_ids, "attention_mask": attention_mask}
        feeds = {name: tensors.get(name, np.zeros_like(input_ids)) for name in self.input_names}
        session = self.whole if alone else self.shared
        output: npt.NDArray[np.float32] = session.run(None, feeds)[0]
        return output


def session_options(threads: int, level: ort.GraphOptimizationLevel) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads would spin between batches, burning the container's CPU quota.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(export: OnnxExport, threads: int) -> ort.InferenceSession:
    """A session on the export's optimised graph, saved into the cache first if absent."""
    optimized = export.optimized_graph(ort.__version__)
    if not optimized.is_file():
        handle, scratch = tempfile.mkstemp(prefix=".optimized-", suffix=".onnx", dir=export.folder)
        os.close(handle)
        saving = session_options(threads, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        saving.optimized_model_filepath = scratch
        ort.InferenceSession(str(export.graph), saving, providers=["CPUExecutionProvider"])
        os.replace(scratch, optimized)  # whole or absent, for a concurrent reader
    options = session_options(threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return ort.InferenceSession(str(optimized), options, providers=["CPUExecutionProvider"])


def lowest_cosine(expected: npt.NDArray[np.float32], served: npt.NDArray[np.float32]) -> float:
    """The least cosine similarity between matching rows (pure)."""
    norms = np.linalg.norm(expected, axis=1) * np.linalg.norm(served, axis=1)
    return float(np.min(np.sum(expected * served, axis=1) / np.where(norms > 0, norms, 1.0)))


def check_against_torch(model: SentenceTransformer, encoder: Encoder, limit: int) -> float:
    """The export's lowest cosine to torch over texts of several lengths; ValueError below MIN_COSINE."""
    pad_id = int(model.tokenizer.pad_token_id or 0)
    rows = [ids[:limit] for ids in model.tokenizer(list(CHECK_TEXTS))["input_ids"]]
    tokens = padded(rows, pad_id)
    cosine = lowest_cosine(TorchEncoder(model)(*tokens), encoder(*tokens))
    if cosine < MIN_COSINE:
        msg = f"the ONNX export's vectors differ from torch's (cosine {cosine:.6f} < {MIN_COSINE}): use torch"
        raise ValueError(msg)
    return cosine


def load_onnx_backend(
    source: str, threads: int, cache_root: Path, all_threads: int | None = None
) -> SentenceTransformersBackend:
    """The backend of `source` (a folder or a cached hub id, as `model_source.resolve_model` gives
    it) computing with ONNX Runtime on `threads` intra-op threads per worker,
    and `all_threads` for a batch that runs alone (a second session, when that is more)."""
    model = load_model(source, threads)
    input_names, _ = tensor_features(model)
    export = cached_export(model, model_folder(source), cache_root, input_names)
    shared = open_session(export, threads)
    whole = open_session(export, all_threads) if all_threads and all_threads > threads else None
    encoder = OnnxEncoder(shared, whole)
    cosine = check_against_torch(model, encoder, int(model.max_seq_length or 512))
    log.info("onnx: %s; lowest cosine to torch on the check texts %.6f", export.graph, cosine)
    return SentenceTransformersBackend(model, encoder)
