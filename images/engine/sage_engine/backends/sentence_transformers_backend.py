"""Embeddings from a sentence-transformers model, batched and tokenized once per batch.

Batch workers (one or more threads) tokenize without truncation (to count tokens and detect over-length inputs),
sorts by length and runs the model in length-homogeneous chunks, like `SentenceTransformer.encode`
does, so the vectors equal `encode`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sentence_transformers import SentenceTransformer

from sage_engine.backends.base import EmbeddingBatch, EmbeddingItem, Prompt
from sage_engine.backends.model_source import resolve_model
from sage_engine.generation import SamplingParams

CHUNK = 32


class SentenceTransformersBackend:
    kind = "embedding"

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        self.limit = int(model.max_seq_length or self.tokenizer.model_max_length or 512)
        self.dimensions = int(model.get_embedding_dimension() or 0)
        # Extra non-tensor features the modules expect next to the token tensors (e.g. modality).
        probe = model.preprocess(["probe"])
        self.extras = {k: v for k, v in probe.items() if not isinstance(v, torch.Tensor)}
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        # Fast tokenizers reconfigure their Rust object on every call; concurrent batch workers
        # must not do that at the same time ("Already borrowed").
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, spec: str, threads: int) -> SentenceTransformersBackend:
        torch.set_num_threads(threads)
        model = SentenceTransformer(resolve_model(spec), device="cpu")
        model.eval()
        return cls(model)

    def supports_embeddings(self) -> bool:
        return True

    def supports_generation(self) -> bool:
        return False

    def embedding_dimensions(self) -> int:
        return self.dimensions

    def supports_dimensions(self, dimensions: int) -> bool:
        return dimensions == self.dimensions

    def max_input_tokens(self) -> int:
        return self.limit

    def vocabulary_size(self) -> int:
        return len(self.tokenizer)

    def _token_ids(self, items: Sequence[EmbeddingItem]) -> list[list[int]]:
        texts = [(i, item) for i, item in enumerate(items) if isinstance(item, str)]
        ids: list[list[int]] = [item if isinstance(item, list) else [] for item in items]
        if texts:
            with self._tokenizer_lock:
                encoded = self.tokenizer([t for _, t in texts], add_special_tokens=True, truncation=False)
            for (index, _), row in zip(texts, encoded["input_ids"], strict=True):
                ids[index] = list(row)
        return ids

    def _forward(self, rows: list[list[int]]) -> npt.NDArray[np.float32]:
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        features: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "token_type_ids": torch.zeros_like(input_ids),
            **self.extras,
        }
        with torch.inference_mode():
            output = self.model(features)["sentence_embedding"]
        result: npt.NDArray[np.float32] = output.float().numpy()
        return result

    def embed(self, items: list[EmbeddingItem]) -> EmbeddingBatch:
        ids = self._token_ids(items)
        counts = [len(row) for row in ids]
        vectors = np.zeros((len(items), self.dimensions), dtype=np.float32)
        # Over-length inputs are rejected by the caller; never run them.
        runnable = sorted((i for i in range(len(items)) if 0 < counts[i] <= self.limit), key=lambda i: -counts[i])
        for start in range(0, len(runnable), CHUNK):
            chunk = runnable[start : start + CHUNK]
            vectors[chunk] = self._forward([ids[i] for i in chunk])
        return EmbeddingBatch(vectors, counts)

    # --- not an LLM ---------------------------------------------------------------------
    def context_length(self) -> int:
        return self.limit

    def default_max_tokens(self, prompt_tokens: int) -> int:
        return 0

    def chat_prompt(self, messages: list[dict[str, str]]) -> Prompt:
        raise NotImplementedError

    def text_prompt(self, prompt: str | list[int]) -> Prompt:
        raise NotImplementedError

    def generate(self, prompt: Prompt, params: SamplingParams, adapter: str | None) -> Iterator[str]:
        raise NotImplementedError

    def adapter_names(self) -> list[str]:
        return []

    def load_adapter(self, name: str, path: str) -> None:
        from sage_engine.errors import bad_request  # noqa: PLC0415 (error path only)

        raise bad_request("This engine serves an embedding model; LoRA adapters need an LLM engine.", "lora_name")

    def unload_adapter(self, name: str) -> None:
        self.load_adapter(name, "")
