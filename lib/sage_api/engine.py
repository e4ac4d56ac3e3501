"""The LLMEngine custom resource: an LLM or embedding model served by engine pods."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from sage_api.common import (
    CONDITIONS_SCHEMA_EXTRA,
    DNS_LABEL,
    Condition,
    EnvVar,
    Resources,
    SageModel,
    SecretKeyRef,
    Toleration,
    cel_rule,
    validated,
)


class EngineKind(StrEnum):
    """What the engine serves."""

    LLM = "llm"
    EMBEDDING = "embedding"


class Backend(StrEnum):
    """The server that runs inside engine pods."""

    VLLM = "vllm"
    TRANSFORMERS = "transformers"
    SENTENCE_TRANSFORMERS = "sentence-transformers"
    DETERMINISTIC = "deterministic"


# Which backends can serve which kind. deterministic is a test backend that serves both.
BACKENDS_FOR_KIND: dict[EngineKind, frozenset[Backend]] = {
    EngineKind.LLM: frozenset({Backend.VLLM, Backend.TRANSFORMERS, Backend.DETERMINISTIC}),
    EngineKind.EMBEDDING: frozenset({Backend.SENTENCE_TRANSFORMERS, Backend.VLLM, Backend.DETERMINISTIC}),
}


def _backend_fits_kind_rule() -> dict[str, str]:
    """spec.backend, when given, must be one that serves spec.engineKind (refused at admission)."""
    clauses, allowed = [], []
    for kind, backends in BACKENDS_FOR_KIND.items():
        names = sorted(b.value for b in backends)
        clauses.append(f"(self.engineKind != '{kind.value}' || self.backend in [{', '.join(repr(n) for n in names)}])")
        allowed.append(f"{kind.value} takes {', '.join(names)}")
    return cel_rule(
        f"!has(self.backend) || ({' && '.join(clauses)})",
        f"backend cannot serve this engineKind: {'; '.join(allowed)}",
        ".backend",
    )


class EmbeddingRuntime(StrEnum):
    """What computes an embedding model's vectors inside the sentence-transformers backend."""

    TORCH = "torch"
    ONNX = "onnx"


class EmbeddingOptions(SageModel):
    """How an embedding engine computes its vectors."""

    runtime: EmbeddingRuntime = EmbeddingRuntime.TORCH
    """torch runs the sentence-transformers model as it is; onnx exports it once to ONNX (cached on the engine's disk, keyed by a hash of the model's files) and runs it with ONNX Runtime, with vectors equal to torch's (cosine >= 0.9999); docs/perf/engine.md compares the two."""


class EnginePhase(StrEnum):
    """Where an engine is in its life."""

    PENDING = "Pending"
    DEPLOYING = "Deploying"
    LOADING = "Loading"
    READY = "Ready"
    DEGRADED = "Degraded"
    PAUSED = "Paused"
    FAILED = "Failed"


MODEL_PATTERN_RULE = cel_rule(
    "!self.startsWith('pvc://') || self.matches('^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+$')",
    "a pvc:// model must be pvc://<claim>/<path inside the claim>",
)


class Adapter(SageModel):
    """A LoRA adapter served next to the base model, selectable by its name."""

    model_config = validated(
        cel_rule("has(self.source) != has(self.finetuneJob)", "set exactly one of source or finetuneJob")
    )

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    """Name clients put in the request's "model" field to use this adapter."""

    source: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Where the adapter lives: pvc://<claim>/<path>, hf://<repo> or a hub id."""

    finetune_job: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Name of a FinetuneJob in the same namespace whose output is this adapter."""


class ModelCache(SageModel):
    """A PersistentVolumeClaim that keeps downloaded model weights across pod restarts."""

    claim_name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the PersistentVolumeClaim (in the engine's namespace)."""

    sub_path: str | None = None
    """Folder inside the claim to use as the cache."""


class LLMEngineSpec(SageModel):
    """Desired state of an LLMEngine."""

    model_config = validated(
        cel_rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "minReplicas must be less than or equal to maxReplicas",
            ".minReplicas",
        ),
        _backend_fits_kind_rule(),
        cel_rule(
            "!has(self.backend) || self.backend != 'vllm' || (has(self.resources) && has(self.resources.gpus) && self.resources.gpus > 0)",
            "the vllm backend needs at least one GPU (resources.gpus); use transformers on CPU",
            ".resources",
        ),
        cel_rule(
            "self.engineKind != 'embedding' || !has(self.adapters) || size(self.adapters) == 0",
            "LoRA adapters apply to llm engines only",
            ".adapters",
        ),
        cel_rule(
            "!has(self.embedding) || (self.engineKind == 'embedding' && (!has(self.backend) || self.backend == 'sentence-transformers'))",
            "embedding options apply to embedding engines on the sentence-transformers backend",
            ".embedding",
        ),
    )

    model: Annotated[
        str,
        Field(min_length=1, max_length=1024, json_schema_extra={"x-kubernetes-validations": [MODEL_PATTERN_RULE]}),
    ]
    """The model to serve: a hub id (Qwen/Qwen2.5-0.5B-Instruct), hf://<repo>, pvc://<claim>/<path>, or a local path (local mode)."""

    engine_kind: EngineKind = EngineKind.LLM
    """What the engine serves: llm (chat and completions) or embedding."""

    backend: Backend | None = None
    """Server inside the pods. Defaults from engineKind: embedding -> sentence-transformers; llm -> vllm when resources.gpus > 0, else transformers. vllm means vLLM 0.33.0 (default image vllm/vllm-openai:v0.33.0): the flags the operator renders, and spec.args, are that release's. deterministic is a test backend with no model."""

    served_model_name: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Name clients put in the request's "model" field. Defaults to metadata.name."""

    aliases: Annotated[list[Annotated[str, Field(min_length=1, max_length=253)]], Field(max_length=16)] | None = None
    """Further names that route to this engine."""

    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    """Number of engine pods. 0 pauses the engine."""

    min_replicas: Annotated[int, Field(ge=0, le=1000)] | None = None
    """Lower bound for autoscaling (default 1). 0 allows scale to zero after scaleDownDelaySeconds idle; a request for the engine at zero replicas is then held by the gateway, which asks for one replica and answers once it is ready."""

    max_replicas: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Upper bound for autoscaling. Set, the operator scales the engine on the load the gateways report (targetInflightRequests); unset, replicas are yours (spec.replicas, kubectl scale, an HPA on the scale subresource)."""

    target_inflight_requests: Annotated[int, Field(ge=1, le=100000)] | None = None
    """Autoscaling target: requests in flight per replica (default 8). With maxReplicas set, the operator sets replicas to ceil(average in flight over its window / target) within [minReplicas, maxReplicas]."""

    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=86400)] | None = None
    """Autoscaling: replicas fall only to the most the last this-many seconds needed (default 300), so that bursty load does not stop and start GPUs."""

    resources: Resources | None = None
    """GPUs, CPU and memory per pod."""

    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Container image; defaults to the operator's image for the backend."""

    args: Annotated[list[str], Field(max_length=128)] | None = None
    """Extra command-line arguments for the engine (e.g. vLLM flags)."""

    env: Annotated[list[EnvVar], Field(max_length=128)] | None = None
    """Extra environment variables for the engine container."""

    embedding: EmbeddingOptions | None = None
    """Embedding engines on the sentence-transformers backend: how vectors are computed (runtime: torch or onnx)."""

    adapters: (
        Annotated[
            list[Adapter],
            Field(
                max_length=64,
                json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            ),
        ]
        | None
    ) = None
    """LoRA adapters loaded into every replica; names must be unique."""

    preemptible: bool = False
    """Whether a FinetuneJob with a matching preemptEngines selector may scale this engine to zero while it trains."""

    cache: ModelCache | None = None
    """A PersistentVolumeClaim for model weights, mounted as the model cache."""

    hf_token_secret: SecretKeyRef | None = None
    """Secret holding a Hugging Face token, passed to the engine as HF_TOKEN."""

    node_selector: dict[str, str] | None = None
    """Node labels the pods must run on."""

    tolerations: Annotated[list[Toleration], Field(max_length=64)] | None = None
    """Taints the pods tolerate (e.g. GPU node taints)."""

    priority_class_name: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """PriorityClass of the pods."""


class LLMEngineStatus(SageModel):
    """Observed state of an LLMEngine, written by the operator."""

    phase: EnginePhase | None = None
    """Pending, Deploying, Loading, Ready, Degraded (some replicas ready), Paused (scaled to zero) or Failed (see message)."""

    backend: Backend | None = None
    """The backend in use, after defaulting."""

    replicas: int | None = None
    """Engine pods that exist."""

    ready_replicas: int | None = None
    """Engine pods that are ready to serve."""

    ready: str | None = None
    """Ready over desired replicas, e.g. 1/2."""

    selector: str | None = None
    """Label selector of the engine pods (for the scale subresource)."""

    endpoint: str | None = None
    """In-cluster URL of the engine Service."""

    served_models: list[str] | None = None
    """Names this engine answers to: served name, aliases and loaded adapters."""

    observed_generation: int | None = None
    """The metadata.generation this status describes."""

    conditions: Annotated[list[Condition], Field(json_schema_extra=CONDITIONS_SCHEMA_EXTRA)] | None = None
    """Ready and Progressing conditions, with reasons."""

    message: str | None = None
    """What the engine is doing, or why it failed."""


class LLMEngine(SageModel):
    """An LLM or embedding model served by engine pods behind an OpenAI-compatible API."""

    api_version: str = "sage.ai/v1alpha1"
    kind: str = "LLMEngine"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: LLMEngineSpec
    status: LLMEngineStatus | None = None
