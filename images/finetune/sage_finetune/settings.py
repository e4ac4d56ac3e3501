"""The runner's settings: one pydantic-settings class read from the command line and from
`SAGE_FT_*` environment variables (the operator renders the Job with env vars; a person types
flags). A flag wins over its variable. Defaults are the FinetuneJob CRD's defaults."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sage_api.finetune import DatasetFormat, FinetuneMethod, LoraConfig, TrainingConfig
from sage_runtime.pod import SERVICE_ACCOUNT_DIR, TERMINATION_LOG
from sage_runtime.settings import OptionalCommaSeparated

ENV_PREFIX = "SAGE_FT_"
_LORA = LoraConfig()
_TRAINING = TrainingConfig()


class FinetuneSettings(BaseSettings):
    """Fine-tune a causal LM (LoRA adapter or all weights) on a JSONL dataset.

    Every option can also be set as an environment variable: SAGE_FT_ + the option name in upper
    case with underscores (--base-model -> SAGE_FT_BASE_MODEL). Progress is printed as one JSON
    line per step on stdout and appended to <output>/progress.jsonl. SIGTERM saves a checkpoint
    under <output>/checkpoints and exits with code 75; running again resumes from it.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        cli_prog_name="python -m sage_finetune",
        cli_kebab_case=True,
        cli_hide_none_type=True,
        cli_implicit_flags=True,
        use_attribute_docstrings=True,
        extra="ignore",
    )

    base_model: str
    """The base model: a folder holding a transformers causal LM and its tokenizer, or a hub id
    (resolved from the local hub cache; downloaded only when HF_HUB_OFFLINE is not set)."""

    dataset: Path
    """The JSONL training file."""

    # Literal rather than the enums so that --help lists the values users type (the enums' member
    # names would show in upper case); `dataset_format` and `finetune_method` give the enums.
    format: Literal["chat", "instruction", "text"] = "chat"
    """Dataset format: chat ({"messages": [...]}, loss on assistant turns), instruction
    ({"prompt", "completion"}, loss on the completion) or text ({"text"})."""

    method: Literal["lora", "full"] = "lora"
    """lora (train an adapter) or full (train all weights)."""

    output: Path
    """Folder that receives the adapter or weights, the tokenizer, sage-finetune.json,
    progress.jsonl and checkpoints/."""

    rank: Annotated[int, Field(ge=1)] = _LORA.rank
    """LoRA rank r."""

    alpha: Annotated[int, Field(ge=1)] = _LORA.alpha
    """LoRA alpha; the update is scaled by alpha/rank."""

    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = _LORA.dropout
    """Dropout on the LoRA input."""

    target_modules: OptionalCommaSeparated = None
    """Modules to adapt, comma separated (e.g. q_proj,v_proj); default: peft's choice for the
    architecture."""

    epochs: Annotated[float, Field(gt=0)] = _TRAINING.epochs
    """Passes over the dataset (ignored when --max-steps is set)."""

    max_steps: Annotated[int, Field(ge=1)] | None = None
    """Stop after this many optimiser steps."""

    learning_rate: Annotated[float, Field(gt=0)] = _TRAINING.learning_rate
    """Peak learning rate (AdamW, linear warmup then linear decay to zero)."""

    warmup_steps: Annotated[int, Field(ge=0)] = 0
    """Steps of linear learning-rate warmup."""

    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    """AdamW weight decay."""

    batch_size: Annotated[int, Field(ge=1)] = _TRAINING.batch_size
    """Examples per micro-batch."""

    gradient_accumulation_steps: Annotated[int, Field(ge=1)] = _TRAINING.gradient_accumulation_steps
    """Micro-batches per optimiser step."""

    max_seq_length: Annotated[int, Field(ge=8)] = _TRAINING.max_seq_length
    """Examples are truncated to this many tokens."""

    seed: Annotated[int, Field(ge=0)] = _TRAINING.seed
    """Random seed (data order, initialisation, dropout)."""

    checkpoint_every_steps: Annotated[int, Field(ge=1)] | None = None
    """Also checkpoint every N steps (a checkpoint is always written on SIGTERM)."""

    keep_checkpoints: Annotated[int, Field(ge=1)] = 2
    """Checkpoints kept; older ones are deleted."""

    status_target: str | None = None
    """namespace/name of the FinetuneJob whose status.progress this run patches (needs
    in-cluster credentials)."""

    status_interval_seconds: Annotated[float, Field(gt=0)] = 5.0
    """Least time between two status patches (every progress line still goes to stdout)."""

    termination_log: Path = TERMINATION_LOG
    """A one-line summary of how the run ended is written here (Kubernetes shows it as the
    container's termination message; outside a pod nothing is written under /dev)."""

    service_account_dir: Path = SERVICE_ACCOUNT_DIR
    """Where the pod's ServiceAccount token and cluster CA are mounted (for --status-target)."""

    @property
    def dataset_format(self) -> DatasetFormat:
        return DatasetFormat(self.format)

    @property
    def finetune_method(self) -> FinetuneMethod:
        return FinetuneMethod(self.method)

    @field_validator("status_target")
    @classmethod
    def _namespace_slash_name(cls, value: str | None) -> str | None:
        if value is not None and (value.count("/") != 1 or value.startswith("/") or value.endswith("/")):
            raise ValueError("must be <namespace>/<name>")
        return value


# `--help` prints the class docstring verbatim; without its source indentation it reads cleanly.
FinetuneSettings.__doc__ = inspect.cleandoc(FinetuneSettings.__doc__ or "")
