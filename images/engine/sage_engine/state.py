"""What one engine process holds: its settings, the loaded backend (or why it is not there yet),
the embedding batcher and the worker threads. Framework-free; the app keeps one instance."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sage_engine import errors
from sage_engine.backends.base import Backend, EmbeddingItem
from sage_engine.batching import Batcher, BatchPolicy
from sage_engine.settings import EngineSettings
from sage_runtime.drain import Drain


@dataclass
class EngineState:
    settings: EngineSettings
    backend: Backend | None = None
    status: str = "loading"
    reason: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    # Embedding batches run on `embedding_workers` threads; generation on one thread, so adapter
    # changes never race a generation. Torch parallelises inside each call.
    embed_executor: ThreadPoolExecutor = field(init=False)
    generate_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="generate")
    )
    batcher: Batcher[EmbeddingItem, tuple[Any, int]] | None = None
    drain: Drain = field(init=False)
    generations: int = 0
    """Generations admitted and not yet ended: one runs, the rest wait for the generation thread."""

    def __post_init__(self) -> None:
        self.drain = Drain(self.settings.drain_seconds)
        self.embed_executor = ThreadPoolExecutor(self.settings.embedding_worker_count(), thread_name_prefix="embed")
        self.reason = f"loading model '{self.settings.model}' with the {self.settings.backend} backend"

    def ready(self, backend: Backend) -> None:
        self.backend = backend
        policy = BatchPolicy(
            max_items=self.settings.max_batch_items,
            max_wait_seconds=self.settings.max_batch_wait_ms / 1000,
        )

        def run_batch(items: list[EmbeddingItem], alone: bool) -> list[tuple[Any, int]]:
            batch = backend.embed(items, alone=alone)
            return list(zip(batch.vectors, batch.token_counts, strict=True))

        self.batcher = Batcher(run_batch, self.embed_executor, policy, self.settings.embedding_worker_count())
        self.status, self.reason = "ok", ""

    def failed(self, reason: str) -> None:
        self.status, self.reason = "failed", reason

    def admit_generation(self) -> None:
        """Count one more generation in (running or queued), or refuse it with 503 when the queue
        is full; every admitted one is ended with `generation_done`."""
        if self.generations > self.settings.max_queued_generations:
            raise errors.queue_full(self.settings.max_queued_generations)
        self.generations += 1

    def generation_done(self) -> None:
        self.generations -= 1

    def require_backend(self) -> Backend:
        if self.backend is None:
            raise errors.loading(f"The engine is not ready: {self.reason}.")
        return self.backend

    def resolve(self, requested: str | None, allow_adapters: bool) -> str | None:
        """Map the request's `model` to None (the base model) or an adapter name; 404 if unknown."""
        backend = self.require_backend()
        names = self.settings.model_names()
        if requested is None or requested in names:
            return None
        adapters = backend.adapter_names()
        if allow_adapters and requested in adapters:
            return requested
        raise errors.model_not_found(requested, names + (adapters if allow_adapters else []))

    def shutdown(self) -> None:
        self.embed_executor.shutdown(wait=False, cancel_futures=True)
        self.generate_executor.shutdown(wait=False, cancel_futures=True)
