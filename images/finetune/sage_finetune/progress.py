"""Progress arithmetic and the progress line. Pure: numbers and a clock reading in, a
`ProgressLine` out.

A progress line is the FinetuneJob's `status.progress` (`sage_api.finetune.FinetuneProgress`,
reused, not redefined) plus what only a log reader needs: the event, the time, throughput and
GPU memory. `ProgressLine.status_progress()` gives back exactly the status part.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime
from enum import StrEnum

from sage_api.finetune import FinetuneProgress

# Steps averaged for the ETA: long enough to smooth noise, short enough to follow a slowdown.
ETA_WINDOW_STEPS = 20


class ProgressEvent(StrEnum):
    """What a progress line reports."""

    STARTED = "started"
    STEP = "step"
    CHECKPOINT = "checkpoint"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"


class ProgressLine(FinetuneProgress):
    """One line of `progress.jsonl` (and of stdout)."""

    event: ProgressEvent
    """What happened."""

    time: str
    """When, as an RFC 3339 UTC timestamp."""

    steps_per_second: float | None = None
    """Optimiser steps per second, averaged over the recent steps."""

    tokens_per_second: float | None = None
    """Tokens processed (padding excluded) per second, averaged over the recent steps."""

    gpu_memory_bytes: int | None = None
    """Peak GPU memory allocated by this process (CUDA only)."""

    checkpoint: str | None = None
    """The checkpoint folder written (events checkpoint and stopped)."""

    message: str | None = None
    """Human-readable detail (events started, completed, stopped, failed)."""

    def status_progress(self) -> FinetuneProgress:
        """The part that goes into the FinetuneJob's status.progress."""
        return FinetuneProgress.model_validate(self.model_dump(include=set(FinetuneProgress.model_fields)))


def timestamp(now_epoch_seconds: float) -> str:
    return datetime.fromtimestamp(now_epoch_seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def percent_done(step: int, total_steps: int) -> int:
    """Whole percent, rounded down, so 100% only appears once the last step is done."""
    if total_steps <= 0:
        return 0
    return max(0, min(100, math.floor(100 * step / total_steps)))


class ProgressMeter:
    """Turns "step N finished at time T with loss L" into progress lines with throughput and ETA.

    Times are passed in (monotonic seconds for rates, epoch seconds for timestamps), so the
    arithmetic is tested without sleeping.
    """

    def __init__(self, total_steps: int, start_step: int, started_at: float) -> None:
        self.total_steps = total_steps
        self.start_step = start_step
        # (monotonic time, step, tokens of that step) of the recent steps and the starting point.
        self._window: deque[tuple[float, int, int]] = deque(maxlen=ETA_WINDOW_STEPS + 1)
        self._window.append((started_at, start_step, 0))
        self.step = start_step
        self.last_loss: float | None = None
        self.last_learning_rate: float | None = None
        self.epoch: float | None = None

    def record_step(
        self,
        step: int,
        *,
        loss: float,
        learning_rate: float,
        epoch: float,
        tokens: int,
        at: float,
    ) -> None:
        """Optimiser step `step` (1-based) finished at monotonic time `at` after `tokens` tokens."""
        self.step, self.last_loss, self.last_learning_rate, self.epoch = (
            step,
            loss,
            learning_rate,
            epoch,
        )
        self._window.append((at, step, tokens))

    def _rates(self) -> tuple[float | None, float | None]:
        if len(self._window) < 2:
            return None, None
        (first_at, first_step, _), (last_at, last_step, _) = self._window[0], self._window[-1]
        elapsed = last_at - first_at
        if elapsed <= 0:
            return None, None
        steps = last_step - first_step
        tokens = sum(count for _, _, count in list(self._window)[1:])
        return steps / elapsed, tokens / elapsed

    def eta_seconds(self) -> int | None:
        steps_per_second, _ = self._rates()
        if steps_per_second is None:
            return None
        return math.ceil(max(0, self.total_steps - self.step) / steps_per_second)

    def line(
        self,
        event: ProgressEvent,
        now_epoch_seconds: float,
        gpu_memory_bytes: int | None = None,
        checkpoint: str | None = None,
        message: str | None = None,
    ) -> ProgressLine:
        """A progress line describing the run as of the last recorded step."""
        steps_per_second, tokens_per_second = self._rates()
        return ProgressLine(
            event=event,
            time=timestamp(now_epoch_seconds),
            step=self.step,
            total_steps=self.total_steps,
            epoch=None if self.epoch is None else round(self.epoch, 4),
            loss=None if self.last_loss is None else round(self.last_loss, 6),
            learning_rate=None if self.last_learning_rate is None else float(f"{self.last_learning_rate:.6g}"),
            eta_seconds=self.eta_seconds(),
            percent=percent_done(self.step, self.total_steps),
            steps_per_second=None if steps_per_second is None else round(steps_per_second, 4),
            tokens_per_second=None if tokens_per_second is None else round(tokens_per_second, 1),
            gpu_memory_bytes=gpu_memory_bytes,
            checkpoint=checkpoint,
            message=message,
        )
