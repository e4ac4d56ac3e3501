"""The arithmetic of an embedding batch, shared by every runtime of the sentence-transformers
backend (pure: numpy only).

Inputs run longest first in chunks of similar length, like `SentenceTransformer.encode` runs
them, so a chunk carries little padding and the vectors equal `encode`'s. Inputs with no tokens,
or more than the model takes, never run: the caller rejects the latter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

CHUNK = 32

TokenMatrix = npt.NDArray[np.int64]


def length_sorted_chunks(counts: Sequence[int], limit: int, size: int = CHUNK) -> Iterator[list[int]]:
    """Indices of the runnable inputs, longest first, `size` at a time."""
    runnable = sorted((i for i, count in enumerate(counts) if 0 < count <= limit), key=lambda i: -counts[i])
    for start in range(0, len(runnable), size):
        yield runnable[start : start + size]


def padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[TokenMatrix, TokenMatrix]:
    """Token ids right-padded to the longest row, and the attention mask that marks the real ones."""
    width = max(len(row) for row in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return input_ids, mask
