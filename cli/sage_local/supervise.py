"""What the local control plane decides about a process that exited (pure): how to describe
the exit, and how long to wait before starting it again (as the kubelet's CrashLoopBackOff does,
with shorter steps: a laptop has no scheduler to wait for)."""

from __future__ import annotations

import signal
from dataclasses import dataclass

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
STABLE_AFTER_SECONDS = 60.0
"""A process that served this long before exiting starts again at the first delay."""


def describe_exit(returncode: int | None, termination_reason: str | None = None) -> str:
    """`exited with code 1: CUDA out of memory`, `killed by SIGKILL`."""
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        text = f"killed by {name}"
    else:
        text = f"exited with code {returncode}"
    return f"{text}: {termination_reason}" if termination_reason else text


@dataclass(frozen=True)
class Backoff:
    """Crash count since the process last ran stably, and the wait it implies."""

    crashes: int = 0

    def after_exit(self, served_seconds: float) -> Backoff:
        if served_seconds >= STABLE_AFTER_SECONDS:
            return Backoff(1)
        return Backoff(self.crashes + 1)

    @property
    def delay_seconds(self) -> float:
        if self.crashes <= 0:
            return 0.0
        return float(min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** (self.crashes - 1)))
