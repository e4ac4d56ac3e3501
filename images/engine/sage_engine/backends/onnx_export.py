"""A sentence-transformers model as an ONNX graph, exported once and cached on disk.

The graph is the model's own module chain (modules.json: Transformer, then Pooling, Normalize,
Dense as configured), traced by `torch.onnx.export`, so pooling and normalisation are exactly the
ones the model's files ask for, inside the graph; no optimum is needed.

The cache folder of an export is named by a hash of the model's files (and of this exporter's
format), so a changed model is exported again and an unchanged one never is. An export is
written to a temporary folder and renamed into place: a reader sees a whole export or none, and
of two processes exporting at once the first rename wins. ONNX Runtime's offline optimisation
(`optimized_graph`) is saved beside it, per onnxruntime version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

log = logging.getLogger("sage_engine")

# Bump when the export writes a different graph for the same files (it re-exports every model).
EXPORT_FORMAT = 1
OPSET = 17
GRAPH_FILE = "model.onnx"
OUTPUT_NAME = "sentence_embedding"
# Modules whose forward is static tensor arithmetic, which a trace records faithfully.
TRACEABLE_MODULES = frozenset({"Transformer", "Pooling", "Normalize", "Dense"})
PROBE_TEXTS = ("probe", "a longer probe sentence, so that the traced batch has padding")


class NotExportable(ValueError):
    """The model has modules the ONNX runtime cannot reproduce; serve it with the torch runtime."""


@dataclass(frozen=True)
class OnnxExport:
    """An export in the cache: its folder, the token tensors it takes, and whether this load wrote it."""

    folder: Path
    input_names: tuple[str, ...]
    exported: bool

    @property
    def graph(self) -> Path:
        return self.folder / GRAPH_FILE

    def optimized_graph(self, runtime_version: str) -> Path:
        """Where ONNX Runtime's optimised graph of this export is kept (it is version-specific)."""
        return self.folder / f"optimized-onnxruntime-{runtime_version}.onnx"


def model_files_digest(folder: Path) -> str:
    """sha256 of every file under `folder` (relative paths and contents) and the export format."""
    digest = hashlib.sha256(f"sage onnx export format {EXPORT_FORMAT}\n".encode())
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\n".encode())
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _hidden(relative: Path) -> bool:
    """Dot folders and files (.git, .cache of the hub client) are not the model."""
    return any(part.startswith(".") for part in relative.parts)


def model_folder(resolved: str) -> Path:
    """The folder of a model `resolve_model` named: a folder as it is, a hub id's cached snapshot."""
    if Path(resolved).is_dir():
        return Path(resolved)
    from huggingface_hub import snapshot_download  # noqa: PLC0415 (only for hub ids)

    return Path(snapshot_download(resolved, local_files_only=True))


def check_exportable(model: SentenceTransformer) -> None:
    """Raises NotExportable naming the modules a trace could not record."""
    kinds = [type(module).__name__ for module in model]
    if kinds[:1] != ["Transformer"] or not set(kinds) <= TRACEABLE_MODULES:
        msg = f"the onnx runtime serves Transformer/Pooling/Normalize/Dense models; this one has {kinds}"
        raise NotExportable(msg)


class _SentenceEmbedding(torch.nn.Module):
    """The model's module chain with the token tensors as positional inputs (what a trace needs)."""

    def __init__(self, model: SentenceTransformer, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        features = dict(zip(self.input_names, tensors, strict=True))
        embedding: torch.Tensor = self.model(features)["sentence_embedding"]
        return embedding


def export_graph(model: SentenceTransformer, input_names: Sequence[str], target: Path) -> None:
    """Trace the model into `target`, with the batch and token axes left free."""
    probe = model.preprocess(list(PROBE_TEXTS))
    # The exporter puts the module it is given back in that module's mode afterwards, recursively:
    # a wrapper left in training mode would switch the model's dropout on for good.
    wrapper = _SentenceEmbedding(model, input_names).eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in input_names} | {OUTPUT_NAME: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        # The trace warns about Python conditions on shapes; none of them depends on the batch.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(probe[name] for name in input_names),
            str(target),
            dynamo=False,  # the TorchScript trace: seconds, and no onnxscript rewriting needed
            input_names=list(input_names),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
        )


def cached_export(model: SentenceTransformer, source: Path, cache_root: Path, input_names: Sequence[str]) -> OnnxExport:
    """The export of `model` (loaded from `source`) under `cache_root`, written first if absent."""
    check_exportable(model)
    folder = cache_root / model_files_digest(source)[:32]
    if (folder / GRAPH_FILE).is_file():
        log.info("onnx: reusing the export in %s", folder)
        return OnnxExport(folder, tuple(input_names), exported=False)
    cache_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_root))
    try:
        export_graph(model, input_names, scratch / GRAPH_FILE)
        about = {"source": str(source), "torch": torch.__version__, "opset": OPSET, "inputs": list(input_names)}
        (scratch / "export.json").write_text(json.dumps(about, indent=2) + "\n")
        try:
            os.rename(scratch, folder)
        except OSError:  # another process renamed its export into place first: the same graph
            if not (folder / GRAPH_FILE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("onnx: exported %s to %s", source, folder)
    return OnnxExport(folder, tuple(input_names), exported=True)
