"""The engine's settings: one pydantic-settings class, filled from `SAGE_ENGINE_*` variables and
overridden by command-line options (see `python -m sage_engine --help`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sage_api.ports import SagePorts
from sage_runtime.cgroup import torch_threads
from sage_runtime.pod import TERMINATION_LOG
from sage_runtime.settings import CommaSeparated

BackendName = Literal["sentence-transformers", "transformers", "deterministic"]
BACKENDS: tuple[str, ...] = ("sentence-transformers", "transformers", "deterministic")
EmbeddingRuntimeName = Literal["torch", "onnx"]


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAGE_ENGINE_", extra="ignore")

    backend: BackendName = Field(
        description="sentence-transformers (embeddings), transformers (causal LM chat and "
        "completions, LoRA adapters) or deterministic (a TEST backend: hash embeddings, echo chat)"
    )
    model: str = Field(
        description="A local folder, hf://<org>/<name> or a hub id (fetched only when "
        "HF_HUB_OFFLINE is not set); any name for the deterministic backend"
    )
    served_model_name: str | None = Field(
        default=None, description="The name clients use in 'model' (default: --model as given)"
    )
    aliases: CommaSeparated = Field(
        default_factory=list,
        description="More names clients may use (env: comma-separated)",
    )
    host: str = Field(default="0.0.0.0", description="Interface to listen on")
    port: int = Field(default_factory=SagePorts.engine, ge=1, le=65535, description="TCP port")
    embedding_runtime: EmbeddingRuntimeName = Field(
        default="torch",
        description="What computes sentence-transformers embeddings: torch, or onnx (ONNX Runtime on a graph "
        "exported once and cached under --onnx-cache; vectors equal torch's within cosine 0.9999)",
    )
    onnx_cache: Path | None = Field(
        default=None,
        description="Folder of the ONNX exports, one per model-files hash (default: onnx/ in SAGE's user cache "
        "folder, SAGE_CACHE_DIR)",
    )
    threads: int | None = Field(default=None, ge=1, description="Torch threads (default: the container's CPU limit)")
    embedding_workers: int = Field(
        default=2,
        ge=1,
        description="Embedding batches computed at once, each with threads/workers torch threads",
    )
    max_batch_items: int = Field(default=64, ge=1, description="Most texts one embedding batch coalesces")
    max_batch_wait_ms: float = Field(default=3.0, ge=0, description="Longest a request waits for batch company (ms)")
    max_inputs: int = Field(default=2048, ge=1, description="Most inputs per embeddings request")
    default_max_tokens: int | None = Field(
        default=2048,
        ge=1,
        description="Most tokens generated for a request that sets no max_tokens (never more than the rest of "
        "the context); unset: the rest of the context",
    )
    max_queued_generations: int = Field(
        default=64,
        ge=1,
        description="Generations waiting for the model at once (besides the running one); more get 503 with "
        "Retry-After, so that a burst is turned away at once rather than left to time out in a queue",
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="Largest request body accepted (bytes)")
    dimensions: int = Field(default=64, ge=1, description="Embedding size of the deterministic test backend")
    token_seconds: float = Field(
        default=0.0, ge=0, le=60, description="Pause before each token of the deterministic test backend (decode time)"
    )
    drain_seconds: float = Field(
        default=120.0,
        ge=0,
        description="On SIGTERM: how long generations in flight may go on; streams still open then end with an "
        "error event (the operator's grace period leaves room for it)",
    )
    adapters_file: Path | None = Field(
        default=None,
        description="JSON file of LoRA adapters to load before the engine turns ready ({name: path}); the "
        "operator mounts one, so that a restarted pod is never Ready without its adapters",
    )
    admin_token_file: Path | None = Field(
        default=None,
        description="File holding the bearer token the adapter routes require (the operator mounts it); "
        "unset: they accept any caller that can reach the engine",
    )
    termination_log: Path = Field(
        default=TERMINATION_LOG,
        description="Where a load failure's reason is written for Kubernetes (when writable)",
    )

    def name(self) -> str:
        return self.served_model_name or self.model

    def model_names(self) -> list[str]:
        """Every name the base model answers to, served name first."""
        names = [self.name()]
        names += [alias for alias in self.aliases if alias not in names]
        return names

    def resolved_threads(self) -> int:
        return self.threads or torch_threads()

    def embedding_worker_count(self) -> int:
        """Never more workers than threads: each worker needs a CPU of its own."""
        return max(1, min(self.embedding_workers, self.resolved_threads()))

    def threads_per_embedding_worker(self) -> int:
        return max(1, self.resolved_threads() // self.embedding_worker_count())
