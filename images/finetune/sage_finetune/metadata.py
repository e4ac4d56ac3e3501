"""`sage-finetune.json`: what a finished run produced, written last so its presence means the
output folder is complete (the operator and people read it to know how to serve the result);
and a run's identity, which a checkpoint or a result must share to be resumed or reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sage_api.common import SageModel
from sage_api.finetune import DatasetFormat, FinetuneMethod
from sage_finetune.settings import FinetuneSettings

METADATA_FILE = "sage-finetune.json"


class FinetuneMetadata(SageModel):
    """The result of a completed fine-tune (camelCase keys, like the CRDs)."""

    base_model: str
    """The base model folder the run started from."""

    method: FinetuneMethod
    """lora (the folder holds an adapter) or full (it holds a complete model)."""

    format: DatasetFormat
    """Dataset format trained on."""

    rank: int | None = None
    """LoRA rank (method lora)."""

    alpha: int | None = None
    """LoRA alpha (method lora)."""

    target_modules: list[str] | None = None
    """Modules LoRA adapted (method lora)."""

    steps: int
    """Optimiser steps trained."""

    epochs: float
    """Fractional passes over the dataset."""

    final_loss: float | None
    """Training loss of the last step."""

    dataset_sha256: str
    """SHA-256 of the dataset file's bytes."""

    dataset_examples: int
    """Examples in the dataset."""

    trainable_parameters: int
    """Parameters that were trained."""

    finished_at: str
    """RFC 3339 UTC time the run completed."""

    identity: dict[str, Any]
    """The settings that identify this run (compared when the same output folder is reused)."""


def write_metadata(output: Path, metadata: FinetuneMetadata) -> Path:
    path = output / METADATA_FILE
    partial = output / f".{METADATA_FILE}.partial"
    partial.write_text(metadata.model_dump_json(by_alias=True, exclude_none=True, indent=2) + "\n")
    partial.replace(path)
    return path


def read_metadata(output: Path) -> FinetuneMetadata | None:
    """The metadata of a completed run in `output`; None if there is none or it is unreadable."""
    path = output / METADATA_FILE
    if not path.is_file():
        return None
    try:
        return FinetuneMetadata.model_validate_json(path.read_text())
    except ValidationError:
        return None


def run_identity(settings: FinetuneSettings, dataset_sha256: str, target_modules: list[str] | None) -> dict[str, Any]:
    """What a checkpoint must share with the current run to be resumed: everything that changes
    the model's shape or the data it sees. Step count and learning rate may change between
    attempts."""
    return {
        "baseModel": str(settings.base_model),
        "datasetSha256": dataset_sha256,
        "format": settings.dataset_format.value,
        "method": settings.finetune_method.value,
        "rank": settings.rank,
        "alpha": settings.alpha,
        "targetModules": sorted(target_modules) if target_modules else None,
        "batchSize": settings.batch_size,
        "gradientAccumulationSteps": settings.gradient_accumulation_steps,
        "maxSeqLength": settings.max_seq_length,
        "seed": settings.seed,
    }
