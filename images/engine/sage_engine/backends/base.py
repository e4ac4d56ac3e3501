"""What the HTTP layer needs from a backend: embeddings, generation, adapters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sage_engine.generation import SamplingParams

EmbeddingItem = str | list[int]


@dataclass(frozen=True)
class EmbeddingBatch:
    """One row per input, and how many tokens each input had (before any truncation)."""

    vectors: npt.NDArray[np.float32]
    token_counts: list[int]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt. `reply` is used only by the deterministic test backend, whose answer
    is a function of the conversation rather than of token ids."""

    token_ids: list[int]
    reply: str = ""


class Backend(Protocol):
    """A loaded model. Methods documented as blocking run in worker threads."""

    kind: str  # "embedding" | "llm" | "test"

    def supports_embeddings(self) -> bool: ...

    def supports_generation(self) -> bool: ...

    # --- embeddings -------------------------------------------------------------------
    def embedding_dimensions(self) -> int: ...

    def supports_dimensions(self, dimensions: int) -> bool: ...

    def max_input_tokens(self) -> int: ...

    def vocabulary_size(self) -> int:
        """Token ids in inputs must be below this."""
        ...

    def embed(self, items: list[EmbeddingItem], *, alone: bool = False) -> EmbeddingBatch:
        """Blocking: one row per item at the model's full size, with token counts (special
        tokens included). Inputs over `max_input_tokens()` get a zero row: callers reject them.
        `alone`: no other batch runs or is expected (a lone client), so the batch may use every
        thread of the engine rather than its worker's share."""
        ...

    # --- generation -------------------------------------------------------------------
    def context_length(self) -> int: ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> Prompt:
        """Token ids of the conversation rendered with the chat template."""
        ...

    def text_prompt(self, prompt: str | list[int]) -> Prompt: ...

    def generate(self, prompt: Prompt, params: SamplingParams, adapter: str | None) -> Iterator[str]:
        """Blocking generator: one decoded text piece per new token."""
        ...

    def default_max_tokens(self, prompt_tokens: int) -> int: ...

    # --- LoRA adapters ----------------------------------------------------------------
    def adapter_names(self) -> list[str]: ...

    def load_adapter(self, name: str, path: str) -> None:
        """Blocking; raises WireError for a bad path or duplicate name."""
        ...

    def unload_adapter(self, name: str) -> None: ...
