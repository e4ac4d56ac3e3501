"""Loading the base model and tokenizer, wrapping the model for the chosen method, and writing
the final result (adapter or weights, tokenizer)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from sage_api.finetune import FinetuneMethod
from sage_finetune.exits import InvalidInputError
from sage_finetune.settings import FinetuneSettings

log = logging.getLogger(__name__)


class ModelSetupError(InvalidInputError):
    """The base model or the LoRA settings cannot be used (the message says which and why)."""


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def training_dtype(device: torch.device) -> torch.dtype:
    # bf16 halves memory on GPUs that do it natively; CPUs train in float32 (bf16 there is slow
    # or unsupported, and the models that fit on a CPU are small anyway).
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(base_model: str) -> Any:
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    except (OSError, ValueError) as error:
        # transformers says "not a local folder and not found on the hub (or offline)".
        raise ModelSetupError(f"cannot load the base model's tokenizer from {base_model}: {error}") from None
    if tokenizer.pad_token_id is None:
        # Padding is masked out of the loss and attention, so any token id works; EOS is the
        # usual choice for models shipped without a pad token.
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise ModelSetupError(f"the tokenizer of {base_model} has neither a pad nor an EOS token")
    return tokenizer


def load_model(settings: FinetuneSettings, device: torch.device) -> Any:
    """The base model on `device`, wrapped with LoRA for method lora; trainable weights marked."""
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(settings.base_model, dtype=training_dtype(device))
    except (OSError, ValueError) as error:
        raise ModelSetupError(f"cannot load the base model {settings.base_model}: {error}") from None
    model = model.to(device)
    if settings.finetune_method is FinetuneMethod.FULL:
        model.train()
        return model
    lora = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as error:
        msg = f"LoRA cannot wrap {settings.base_model}: {error} (set --target-modules / SAGE_FT_TARGET_MODULES)"
        raise ModelSetupError(msg) from None
    model.train()
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def target_modules_of(model: Any) -> list[str] | None:
    """The module names LoRA adapted (resolved from peft's per-architecture default if unset)."""
    config = getattr(model, "peft_config", {}).get("default")
    modules = getattr(config, "target_modules", None)
    return sorted(modules) if modules else None


def save_result(model: Any, tokenizer: Any, output: Path) -> None:
    """The adapter (adapter_config.json + adapter_model.safetensors) or the full model
    (config.json + model.safetensors), and the tokenizer, into `output`."""
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output), safe_serialization=True)
    tokenizer.save_pretrained(str(output))
