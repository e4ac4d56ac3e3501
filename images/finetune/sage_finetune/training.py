"""The training loop, written out plainly (no HF Trainer): the step arithmetic lives in
`schedule`, progress in `progress`, checkpoints in `checkpoint`; this module wires them together
around forward, backward and optimiser step.

Loss: summed token cross-entropy over every micro-batch of a step, divided by the step's trained
tokens, so gradient accumulation gives the same update as one big batch would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch.optim.lr_scheduler import LambdaLR

from sage_finetune.checkpoint import (
    TrainerState,
    latest_checkpoint,
    load_checkpoint,
    read_trainer_state,
    save_checkpoint,
)
from sage_finetune.encoding import IGNORE_INDEX, EncodedExample, collate
from sage_finetune.progress import ProgressEvent, ProgressMeter
from sage_finetune.schedule import TrainingPlan, learning_rate_factor
from sage_finetune.settings import FinetuneSettings
from sage_finetune.sinks import ProgressSink

log = logging.getLogger(__name__)

# Gradients are clipped to this global norm: a standard guard against one bad batch.
MAX_GRADIENT_NORM = 1.0
# Losses remembered in a checkpoint (the final loss of a run that resumes and stops at once).
LOSSES_KEPT = 100


class Outcome(StrEnum):
    COMPLETED = "completed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RunResult:
    """How a training attempt ended."""

    outcome: Outcome
    step: int
    total_steps: int
    resumed_from: int
    final_loss: float | None
    checkpoint: Path | None


def _token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over positions whose label is not ignored."""
    vocab = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, vocab),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def _gpu_memory(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


class Trainer:
    """One training attempt: resumes from the newest checkpoint, trains until done or stopped."""

    def __init__(
        self,
        settings: FinetuneSettings,
        model: Any,
        *,
        examples: Sequence[EncodedExample],
        pad_token_id: int,
        identity: dict[str, Any],
        sink: ProgressSink,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.model = model
        self.examples = examples
        self.pad_token_id = pad_token_id
        self.identity = identity
        self.sink = sink
        self.stop = stop
        self.device: torch.device = next(model.parameters()).device
        self.plan = TrainingPlan(
            num_examples=len(examples),
            batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            epochs=settings.epochs,
            max_steps=settings.max_steps,
            seed=settings.seed,
        )
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        total, warmup = self.plan.total_steps, settings.warmup_steps
        self.scheduler = LambdaLR(self.optimizer, lambda step: learning_rate_factor(step, total, warmup))
        self.losses: list[float] = []
        self.last_checkpoint: Path | None = None

    def _resume(self) -> int:
        checkpoint = latest_checkpoint(self.settings.output)
        if checkpoint is None:
            return 0
        state = load_checkpoint(checkpoint, self.model, self.optimizer, self.scheduler, self.identity)
        self.losses = state.losses
        self.last_checkpoint = checkpoint
        log.info("resumed from %s (step %d)", checkpoint, state.step)
        return state.step

    def _checkpoint(self, step: int) -> Path:
        if self.last_checkpoint is not None and read_trainer_state(self.last_checkpoint).step == step:
            return self.last_checkpoint
        state = TrainerState(step=step, identity=self.identity, losses=self.losses[-LOSSES_KEPT:])
        self.last_checkpoint = save_checkpoint(
            self.settings.output,
            self.model,
            self.optimizer,
            self.scheduler,
            state,
            keep=self.settings.keep_checkpoints,
        )
        log.info("checkpoint written: %s", self.last_checkpoint)
        return self.last_checkpoint

    def _train_step(self, step: int) -> tuple[float, int, float]:
        """One optimiser step; returns (loss, tokens processed, learning rate used)."""
        batches = [
            collate([self.examples[i] for i in indices], self.pad_token_id) for indices in self.plan.micro_batches(step)
        ]
        trained = max(1, sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches))
        learning_rate = float(self.scheduler.get_last_lr()[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens = 0.0, 0
        for batch in batches:
            on_device = {key: value.to(self.device) for key, value in batch.items()}
            logits = self.model(input_ids=on_device["input_ids"], attention_mask=on_device["attention_mask"]).logits
            micro_loss = _token_loss_sum(logits, on_device["labels"])
            torch.autograd.backward(micro_loss / trained)
            loss_sum += float(micro_loss.detach())
            tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(self.parameters, MAX_GRADIENT_NORM)
        self.optimizer.step()
        self.scheduler.step()
        return loss_sum / trained, tokens, learning_rate

    def run(self) -> RunResult:
        start = self._resume()
        total = self.plan.total_steps
        meter = ProgressMeter(total, start, time.monotonic())
        meter.epoch = self.plan.epoch_at(start)
        meter.last_loss = self.losses[-1] if self.losses else None
        started = f"resuming at step {start}" if start else "starting"
        started += f": {total} steps planned"
        self.sink.publish(meter.line(ProgressEvent.STARTED, time.time(), message=started))
        every = self.settings.checkpoint_every_steps
        for step in range(start, total):
            if self.stop.is_set():
                return self._stopped(step, start, total, meter)
            loss, tokens, learning_rate = self._train_step(step)
            self.losses.append(loss)
            done = step + 1
            meter.record_step(
                done,
                loss=loss,
                learning_rate=learning_rate,
                epoch=self.plan.epoch_at(done),
                tokens=tokens,
                at=time.monotonic(),
            )
            self.sink.publish(meter.line(ProgressEvent.STEP, time.time(), gpu_memory_bytes=_gpu_memory(self.device)))
            if every and done % every == 0 and done < total:
                path = self._checkpoint(done)
                self.sink.publish(meter.line(ProgressEvent.CHECKPOINT, time.time(), checkpoint=str(path)))
        final_loss = self.losses[-1] if self.losses else None
        return RunResult(Outcome.COMPLETED, max(start, total), total, start, final_loss, self.last_checkpoint)

    def _stopped(self, step: int, start: int, total: int, meter: ProgressMeter) -> RunResult:
        path = self._checkpoint(step) if step > 0 else None
        message = f"stopped on request at step {step}" + (f"; checkpoint {path}" if path else "; nothing to save yet")
        self.sink.publish(
            meter.line(
                ProgressEvent.STOPPED,
                time.time(),
                checkpoint=str(path) if path else None,
                message=message,
            )
        )
        final_loss = self.losses[-1] if self.losses else None
        return RunResult(Outcome.STOPPED, step, total, start, final_loss, path)
