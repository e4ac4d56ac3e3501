"""How many threads a batch that runs alone (a lone client's) uses: every thread of the engine or
its worker's share, chosen by measuring both, not assumed (pure).

On a quiet machine every thread is faster (MiniLM, torch, one text: 12.9 -> 10.5 ms on 2 CPUs).
On a busy one, OpenMP's threads wait at each layer for the one the kernel descheduled: with a CPU
hog beside it, the same batch took 21 ms at p50 and 164 ms at p99 on two threads against 12.5 ms
on one. Which case holds changes with the machine's load, so each lone batch reports its time on
the arm it ran, and the arm with the lower median of its last `WINDOW` times is taken, with the
other tried again every `explore_every` lone batches to notice the machine change. A median, not
a mean: a long text or one preemption moves it by one place, not by its size.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from dataclasses import dataclass, field

EXPLORE_EVERY = 20
"""One lone batch in this many runs on the arm that is not the cheaper one."""
WINDOW = 5
"""An arm's times kept: the newest this many."""


def _arms() -> dict[bool, deque[float]]:
    return {True: deque(maxlen=WINDOW), False: deque(maxlen=WINDOW)}


@dataclass
class LoneThreads:
    """Chooses, per lone batch, whether it runs on every thread (`choose` -> True) or on its
    worker's share (False), from what `record` was told. Thread-safe."""

    explore_every: int = EXPLORE_EVERY
    _times: dict[bool, deque[float]] = field(default_factory=_arms)
    """Per arm (True: every thread): its latest lone batches' seconds."""
    _warmed: set[bool] = field(default_factory=set)
    """Arms whose first batch is behind them: that one is not kept (OpenMP starts its threads)."""
    _chosen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def choose(self) -> bool:
        with self._lock:
            for arm in (True, False):
                if not self._times[arm]:
                    return arm  # each arm measured before any is preferred
            self._chosen += 1
            medians = self._medians()
            cheaper = medians[True] <= medians[False]
            return not cheaper if self._chosen % self.explore_every == 0 else cheaper

    def record(self, every_thread: bool, seconds: float) -> None:
        with self._lock:
            if every_thread in self._warmed:
                self._times[every_thread].append(seconds)
            else:
                self._warmed.add(every_thread)

    def medians(self) -> dict[bool, float]:
        """Per arm measured so far (True: every thread): the median of its latest times."""
        with self._lock:
            return self._medians()

    def _medians(self) -> dict[bool, float]:
        return {arm: statistics.median(times) for arm, times in self._times.items() if times}
