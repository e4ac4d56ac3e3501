"""Counts that every worker of one gateway reads and each worker writes only its own part of.

The gateway's workers are processes (one event loop each, forked from one supervisor), so what
routing must agree on across them lives in one anonymous shared mapping made before the fork:
requests in flight per replica (least-inflight and the prefix-hash bound read them), and per
engine the requests held and routed (`GET /load`, which the autoscaler reads from any worker).

Each worker writes only its own rows, so no write races another and no lock is needed; a reader
sums the workers' rows. Keys (replica URLs, engine keys) map to cells through a count-min sketch:
two rows of `width` cells per worker, each key in one cell of each row (two independent hashes);
a key's count is the smaller of its two cells. Keys that share a cell in one row almost never
share one in the other, and when they do a count can only read too high, never too low; counts
go back to zero when requests end, so the cells never need to be handed out or reclaimed.
"""

from __future__ import annotations

import hashlib
import mmap
from collections.abc import Iterator, Mapping

from sage_gateway.policies import InflightCounter

DEPTH = 2
"""Rows per worker (independent hashes)."""
CELL_BYTES = 8
_COLUMNS_KEPT = 65536


class SharedCounts:
    """The shared mapping: `workers` x DEPTH rows of `width` signed 64-bit cells."""

    def __init__(self, workers: int, width: int = 4096) -> None:
        if workers < 1 or width < 1 or width & (width - 1):
            msg = f"need at least one worker and a power-of-two width, got {workers} and {width}"
            raise ValueError(msg)
        self.workers = workers
        self.width = width
        self._memory = mmap.mmap(-1, workers * DEPTH * width * CELL_BYTES)  # MAP_SHARED: children see it
        self.cells = memoryview(self._memory).cast("q")

    def for_worker(self, index: int) -> WorkerCounts:
        if not 0 <= index < self.workers:
            msg = f"worker index {index} is not below {self.workers}"
            raise ValueError(msg)
        return WorkerCounts(self, index)


class WorkerCounts:
    """One worker's view: it adds to its own rows and reads everyone's."""

    def __init__(self, shared: SharedCounts, index: int) -> None:
        self.shared = shared
        self.index = index
        self._cells = shared.cells
        self._columns: dict[str, tuple[int, int]] = {}
        row = shared.width
        self._own = (index * DEPTH * row, (index * DEPTH + 1) * row)
        self._stride = DEPTH * row
        self._row = row

    def reset(self) -> None:
        """Zero this worker's rows (a restarted worker's predecessor may have left counts)."""
        start, width = self._own[0], self._stride
        self._cells[start : start + width] = memoryview(bytes(width * CELL_BYTES)).cast("q")

    def columns(self, key: str) -> tuple[int, int]:
        found = self._columns.get(key)
        if found is None:
            if len(self._columns) >= _COLUMNS_KEPT:
                self._columns.clear()
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            mask = self._row - 1
            found = (int.from_bytes(digest[:4], "little") & mask, int.from_bytes(digest[4:], "little") & mask)
            self._columns[key] = found
        return found

    def add(self, key: str, delta: int) -> None:
        first, second = self.columns(key)
        cells = self._cells
        cells[self._own[0] + first] += delta
        cells[self._own[1] + second] += delta

    def count(self, key: str) -> int:
        """All workers' count of `key` (never below the true count)."""
        first, second = self.columns(key)
        cells, stride, row = self._cells, self._stride, self._row
        total_first = total_second = 0
        for base in range(0, self.shared.workers * stride, stride):
            total_first += cells[base + first]
            total_second += cells[base + row + second]
        return min(total_first, total_second)


class SharedInflight:
    """Requests in flight per replica URL across all workers (the InflightCounter of one worker
    among several). `counts` reads every worker's; iterating it gives the URLs this worker has
    requests on."""

    def __init__(self, counts: WorkerCounts) -> None:
        self._shared = counts
        self._mine = InflightCounter()
        self.counts: Mapping[str, int] = _AllWorkers(counts, self._mine.counts)

    def start(self, url: str) -> None:
        self._mine.start(url)
        self._shared.add(url, 1)

    def finish(self, url: str) -> None:
        self._mine.finish(url)
        self._shared.add(url, -1)


class _AllWorkers(Mapping[str, int]):
    def __init__(self, counts: WorkerCounts, mine: dict[str, int]) -> None:
        self._counts = counts
        self._mine = mine

    def __getitem__(self, key: str) -> int:
        return self._counts.count(key)

    def get(self, key: str, default: int | None = 0) -> int:  # type: ignore[override]
        return self._counts.count(key)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._mine))

    def __len__(self) -> int:
        return len(self._mine)


class SharedTally:
    """A count per key (an engine's held or routed requests) summed over all workers."""

    def __init__(self, counts: WorkerCounts, prefix: str) -> None:
        self._counts = counts
        self._prefix = prefix

    def add(self, key: str, delta: int = 1) -> None:
        self._counts.add(self._prefix + key, delta)

    def get(self, key: str, default: int = 0) -> int:
        return self._counts.count(self._prefix + key)
