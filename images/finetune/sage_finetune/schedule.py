"""Step arithmetic of a training run. Pure: how many optimiser steps, which examples each step
sees, and the learning-rate factor at each step.

The data order is a function of (seed, epoch) alone, so a run resumed at step N sees exactly the
batches an uninterrupted run would have seen from step N on; nothing about the data loader has to
be saved in a checkpoint.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingPlan:
    """How `num_examples` examples are cut into micro-batches and optimiser steps."""

    num_examples: int
    batch_size: int
    gradient_accumulation_steps: int
    epochs: float
    max_steps: int | None
    seed: int

    def __post_init__(self) -> None:
        if self.num_examples < 1 or self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            msg = "a plan needs at least one example, batch size >= 1 and accumulation >= 1"
            raise ValueError(msg)
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError("epochs must be > 0 when max_steps is not set")

    @property
    def micro_batches_per_epoch(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / self.gradient_accumulation_steps)

    @property
    def total_steps(self) -> int:
        """max_steps when set, else enough steps for `epochs` passes (at least one)."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * self.steps_per_epoch))

    def epoch_at(self, steps_done: int) -> float:
        """Fractional epoch after `steps_done` optimiser steps."""
        return steps_done / self.steps_per_epoch

    def example_order(self, epoch: int) -> list[int]:
        """The shuffled example indices of one epoch (deterministic in seed and epoch)."""
        order = list(range(self.num_examples))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def micro_batches(self, step: int) -> list[list[int]]:
        """Example indices of each micro-batch of optimiser step `step` (0-based)."""
        epoch, step_in_epoch = divmod(step, self.steps_per_epoch)
        order = self.example_order(epoch)
        first = step_in_epoch * self.gradient_accumulation_steps
        last = min(first + self.gradient_accumulation_steps, self.micro_batches_per_epoch)
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(first, last)]


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the peak learning rate at optimiser step `step` (0-based): linear warmup over
    `warmup_steps`, then linear decay that reaches zero after the last step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    return max(0.0, 1.0 - (step - warmup_steps) / decay_steps)
