"""A fine-tune as a user asks for it (`sage llm fine-tune` / `engine start --engine-kind finetune`),
the one request both targets take: the local control plane runs the runner with it, a cluster
turns it into a FinetuneJob (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class RequestError(ValueError):
    """A bad argument, named by its command-line option (the command exits 2 with this message)."""


@dataclass(frozen=True)
class FinetuneRequest:
    """A fine-tune as the user asked for it. `dataset` and `output` are local paths for the
    local target; a cluster reads pvc://claim/path (or configmap://name/key for the dataset), and
    uploads a small local dataset file as a ConfigMap."""

    name: str
    base_model: str
    dataset: str
    output: str
    format: str = "chat"
    method: str = "lora"
    rank: int = 16
    alpha: int = 32
    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 2e-4
    batch_size: int = 4
    serve: str | None = None
    """An engine that should serve the result once training succeeds."""

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> FinetuneRequest:
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**known)


def check_finetune(request: FinetuneRequest) -> FinetuneRequest:
    """The checks every target shares; a RequestError names the option."""
    checks = [
        (bool(DNS_LABEL.fullmatch(request.name)), "--name", "must be a DNS label"),
        (request.format in {"chat", "instruction", "text"}, "--format", "must be chat, instruction or text"),
        (request.method in {"lora", "full"}, "--method", "must be lora or full"),
        (request.rank >= 1, "--lora-rank", "must be at least 1"),
        (request.alpha >= 1, "--lora-alpha", "must be at least 1"),
        (request.epochs > 0, "--epochs", "must be more than 0"),
        (request.max_steps is None or request.max_steps >= 1, "--max-steps", "must be at least 1"),
        (request.learning_rate > 0, "--learning-rate", "must be more than 0"),
        (request.batch_size >= 1, "--batch-size", "must be at least 1"),
        (bool(request.dataset), "--dataset", "is required for a fine-tune"),
        (bool(request.output), "--output", "is required for a fine-tune"),
    ]
    for passed, option, problem in checks:
        if not passed:
            msg = f"{option} {problem}"
            raise RequestError(msg)
    return request
