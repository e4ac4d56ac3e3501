"""Model backends: what a model can do, independent of HTTP.

`load_backend(settings)` imports only the backend asked for, so the deterministic test backend
starts without importing torch, and finds the model before importing any (once: the backend
loads from what was found): a model that is not there fails the engine in well under a second
instead of after torch's import (seconds; tens of them in a container starting cold), on each
restart of a crash loop.
"""

from __future__ import annotations

import logging

from sage_api.paths import cache_dir
from sage_engine.backends.base import Backend
from sage_engine.settings import EngineSettings

log = logging.getLogger("sage_engine")


def load_backend(settings: EngineSettings) -> Backend:
    """Load the model (slow: runs in a thread while /health answers 503)."""
    if settings.backend == "deterministic":
        from sage_engine.backends.deterministic_backend import DeterministicBackend  # noqa: PLC0415 (torch-free start)

        log.warning("backend 'deterministic' is a TEST backend: hash embeddings and an echo chat, no model")
        return DeterministicBackend(settings.model, settings.dimensions, settings.token_seconds)
    from sage_engine.backends.model_source import resolve_model  # noqa: PLC0415 (imports httpx)

    source = resolve_model(settings.model)  # raises, saying why, when the model cannot be found
    if settings.backend == "sentence-transformers" and settings.embedding_runtime == "onnx":
        from sage_engine.backends.onnx_backend import load_onnx_backend  # noqa: PLC0415 (imports onnxruntime)

        cache = settings.onnx_cache or cache_dir() / "onnx"
        per_worker = settings.threads_per_embedding_worker()
        return load_onnx_backend(source, per_worker, cache, settings.resolved_threads())
    if settings.backend == "sentence-transformers":
        from sage_engine.backends.sentence_transformers_backend import (  # noqa: PLC0415 (imports torch)
            SentenceTransformersBackend,
        )

        return SentenceTransformersBackend.load(
            source, settings.threads_per_embedding_worker(), settings.resolved_threads()
        )
    from sage_engine.backends.transformers_backend import TransformersBackend  # noqa: PLC0415 (imports torch)

    return TransformersBackend.load(source, settings.resolved_threads())
