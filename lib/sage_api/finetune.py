"""The FinetuneJob custom resource: a LoRA or full fine-tune run as a Kubernetes Job."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from sage_api.common import (
    CONDITIONS_SCHEMA_EXTRA,
    Condition,
    LabelSelector,
    Resources,
    SageModel,
    cel_rule,
    validated,
)


class DatasetFormat(StrEnum):
    """How each JSONL line of the dataset is read."""

    CHAT = "chat"
    INSTRUCTION = "instruction"
    TEXT = "text"


class FinetuneMethod(StrEnum):
    """What is trained."""

    LORA = "lora"
    FULL = "full"


class FinetunePhase(StrEnum):
    """Where a fine-tune is in its life."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Dataset(SageModel):
    """The training data."""

    model_config = validated(
        cel_rule(
            "self.source.startsWith('pvc://') || self.source.startsWith('configmap://')",
            "source must be pvc://<claim>/<path> or configmap://<name>/<key>",
            ".source",
        )
    )

    source: Annotated[str, Field(min_length=1, max_length=1024)]
    """Where the JSONL file is: pvc://<claim>/<path> or configmap://<name>/<key>."""

    format: DatasetFormat = DatasetFormat.CHAT
    """chat (lines of {"messages": [...]}, loss on assistant turns), instruction ({"prompt", "completion"}) or text ({"text"})."""


class LoraConfig(SageModel):
    """LoRA hyper-parameters (method: lora)."""

    rank: Annotated[int, Field(ge=1, le=1024)] = 16
    """Rank r of the low-rank update."""

    alpha: Annotated[int, Field(ge=1, le=4096)] = 32
    """Scaling alpha; the update is scaled by alpha/rank."""

    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    """Dropout on the LoRA input."""

    target_modules: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=64)] | None = None
    """Module names to adapt (e.g. q_proj, v_proj); defaults to the attention projections of the architecture."""


class TrainingConfig(SageModel):
    """Optimisation settings."""

    epochs: Annotated[float, Field(gt=0, le=1000)] = 1
    """Passes over the dataset (ignored when maxSteps is set)."""

    max_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    """Stop after this many optimiser steps."""

    learning_rate: Annotated[float, Field(gt=0, le=1)] = 2e-4
    """Peak learning rate."""

    batch_size: Annotated[int, Field(ge=1, le=4096)] = 4
    """Examples per device per step."""

    gradient_accumulation_steps: Annotated[int, Field(ge=1, le=1024)] = 1
    """Micro-batches accumulated per optimiser step."""

    max_seq_length: Annotated[int, Field(ge=8, le=131072)] = 1024
    """Longer examples are truncated to this many tokens."""

    seed: Annotated[int, Field(ge=0)] = 42
    """Random seed (data order, initialisation)."""


class FinetuneOutput(SageModel):
    """Where the result is written."""

    claim_name: Annotated[str, Field(min_length=1, max_length=253)]
    """PersistentVolumeClaim that receives the adapter or weights (and checkpoints)."""

    path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Folder inside the claim; defaults to finetune/<job name>."""


class ServeTarget(SageModel):
    """Hand-off to serving once training succeeds."""

    engine: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of an LLMEngine in the same namespace that should serve the trained adapter."""


class FinetuneJobSpec(SageModel):
    """Desired state of a FinetuneJob."""

    base_model: Annotated[str, Field(min_length=1, max_length=1024)]
    """The model to fine-tune: a hub id, hf://<repo> or pvc://<claim>/<path>."""

    dataset: Dataset
    """Training data and its format."""

    method: FinetuneMethod = FinetuneMethod.LORA
    """lora (an adapter) or full (all weights)."""

    lora: LoraConfig | None = None
    """LoRA hyper-parameters; defaults apply when omitted."""

    training: TrainingConfig | None = None
    """Optimisation settings; defaults apply when omitted."""

    resources: Resources | None = None
    """GPUs, CPU and memory of the training pod."""

    output: FinetuneOutput
    """Where the result is written."""

    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Container image; defaults to the operator's fine-tune image."""

    suspend: bool = False
    """true stops training after a checkpoint; false resumes from it."""

    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 2
    """Retries of a failed attempt before the job is Failed."""

    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Wall-clock limit for the whole job."""

    preempt_engines: LabelSelector | None = None
    """LLMEngines (with preemptible: true) to scale to zero while this job runs."""

    serve: ServeTarget | None = None
    """Add the trained adapter to this engine on success."""


class FinetuneProgress(SageModel):
    """Training progress as reported by the runner."""

    step: int | None = None
    """Optimiser steps done."""

    total_steps: int | None = None
    """Optimiser steps planned."""

    epoch: float | None = None
    """Fractional epoch."""

    loss: float | None = None
    """Recent training loss."""

    learning_rate: float | None = None
    """Current learning rate."""

    eta_seconds: int | None = None
    """Estimated seconds to completion."""

    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    """step / totalSteps, in percent."""


class FinetuneResult(SageModel):
    """What the job produced."""

    uri: str | None = None
    """Location of the adapter or weights, e.g. pvc://claim/finetune/job."""

    base_model: str | None = None
    """The model it was trained from."""

    rank: int | None = None
    """LoRA rank (method: lora)."""


class FinetuneJobStatus(SageModel):
    """Observed state of a FinetuneJob, written by the operator."""

    phase: FinetunePhase | None = None
    """Pending, Running, Suspended, Succeeded or Failed."""

    progress: FinetuneProgress | None = None
    """Training progress."""

    progress_text: str | None = None
    """Progress in percent, for kubectl, e.g. 37%."""

    last_checkpoint: str | None = None
    """Newest checkpoint written."""

    output: FinetuneResult | None = None
    """The result, once the job succeeded."""

    attempts: int | None = None
    """Pods started so far."""

    start_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When training started."""

    completion_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the job succeeded or failed."""

    observed_generation: int | None = None
    """The metadata.generation this status describes."""

    conditions: Annotated[list[Condition], Field(json_schema_extra=CONDITIONS_SCHEMA_EXTRA)] | None = None
    """Conditions (Complete, Failed, Suspended), with reasons."""

    message: str | None = None
    """What the job is doing, or why it failed."""


class FinetuneJob(SageModel):
    """A LoRA or full fine-tune run as a Kubernetes Job, with progress in its status."""

    api_version: str = "sage.ai/v1alpha1"
    kind: str = "FinetuneJob"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: FinetuneJobSpec
    status: FinetuneJobStatus | None = None
