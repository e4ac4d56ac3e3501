"""Embeddings from a sentence-transformers model, batched and tokenized once per batch.

Batch workers (one or more threads) tokenize without truncation (to count tokens and detect
over-length inputs), then run the model in length-sorted chunks (`embedding_batches`), like
`SentenceTransformer.encode` does, so the vectors equal `encode`'s. What runs a chunk is an
`Encoder`: the torch model itself here, or its ONNX export (`onnx_backend`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from sentence_transformers import SentenceTransformer

from sage_engine.backends.base import EmbeddingBatch, EmbeddingItem, Prompt
from sage_engine.backends.embedding_batches import TokenMatrix, length_sorted_chunks, padded
from sage_engine.backends.lone_threads import LoneThreads
from sage_engine.generation import SamplingParams


class Encoder(Protocol):
    """Padded token ids and their attention mask -> one sentence embedding per row; `alone`: the
    batch may use every thread (see `Backend.embed`)."""

    def __call__(
        self, input_ids: TokenMatrix, attention_mask: TokenMatrix, *, alone: bool = False
    ) -> npt.NDArray[np.float32]: ...


def tensor_features(model: SentenceTransformer) -> tuple[list[str], dict[str, Any]]:
    """The token tensors the model's modules take (input_ids, attention_mask and, for BERT-like
    models, token_type_ids), and the extra non-tensor features they expect (e.g. modality)."""
    probe = model.preprocess(["probe"])
    names = [name for name, value in probe.items() if isinstance(value, torch.Tensor)]
    extras = {name: value for name, value in probe.items() if not isinstance(value, torch.Tensor)}
    return names, extras


class TorchEncoder:
    """The sentence-transformers modules themselves, in torch, each worker on `share` threads
    (None: whatever its thread has); a batch that runs alone may take `every_thread` of them, as
    `lone` decides from what each arm measured (`lone_threads`: all of them win on a quiet
    machine, one wins on a busy one, where OpenMP's threads wait for each other)."""

    def __init__(self, model: SentenceTransformer, share: int | None = None, every_thread: int | None = None) -> None:
        self.model = model
        self.names, self.extras = tensor_features(model)
        self.share, self.every_thread = share, every_thread
        self.lone = LoneThreads()
        self._set = threading.local()

    def __call__(
        self, input_ids: TokenMatrix, attention_mask: TokenMatrix, *, alone: bool = False
    ) -> npt.NDArray[np.float32]:
        share, every_thread = self.share, self.every_thread
        if not alone or share is None or every_thread is None or every_thread <= share:
            if share is not None:
                self._threads(share)
            return self._run(input_ids, attention_mask)
        every = self.lone.choose()
        self._threads(every_thread if every else share)
        started = time.perf_counter()
        result = self._run(input_ids, attention_mask)
        self.lone.record(every, time.perf_counter() - started)
        return result

    def _threads(self, count: int) -> None:
        """This thread's torch threads. OpenMP's count is the calling thread's own, so other
        workers keep theirs; each worker sets its own before its first batch, since a thread that
        never set one starts from the count last set anywhere (a lone batch's, say)."""
        if getattr(self._set, "count", None) != count:
            torch.set_num_threads(count)
            self._set.count = count

    def _run(self, input_ids: TokenMatrix, attention_mask: TokenMatrix) -> npt.NDArray[np.float32]:
        ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
        features = {name: tensors[name] for name in self.names if name in tensors} | self.extras
        with torch.inference_mode():
            output = self.model(features)["sentence_embedding"]
        result: npt.NDArray[np.float32] = output.float().numpy()
        return result


class SentenceTransformersBackend:
    kind = "embedding"

    def __init__(self, model: SentenceTransformer, encoder: Encoder | None = None) -> None:
        self.tokenizer = model.tokenizer
        self.encoder: Encoder = encoder or TorchEncoder(model)
        self.limit = int(model.max_seq_length or self.tokenizer.model_max_length or 512)
        self.dimensions = int(model.get_embedding_dimension() or 0)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        # Fast tokenizers reconfigure their Rust object on every call; concurrent batch workers
        # must not do that at the same time ("Already borrowed").
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, source: str, threads: int, every_thread: int | None = None) -> SentenceTransformersBackend:
        """`threads` per batch worker; a lone client's batch may take `every_thread` (see TorchEncoder)."""
        model = load_model(source, threads)
        return cls(model, TorchEncoder(model, threads, every_thread or threads))

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

    def embed(self, items: list[EmbeddingItem], *, alone: bool = False) -> EmbeddingBatch:
        ids = self._token_ids(items)
        counts = [len(row) for row in ids]
        vectors = np.zeros((len(items), self.dimensions), dtype=np.float32)
        for chunk in length_sorted_chunks(counts, self.limit):
            vectors[chunk] = self.encoder(*padded([ids[i] for i in chunk], self.pad_id), alone=alone)
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


def load_model(source: str, threads: int) -> SentenceTransformer:
    """The sentence-transformers model of `source` (a folder or a cached hub id, as
    `model_source.resolve_model` gives it) on the CPU, with `threads` torch threads."""
    torch.set_num_threads(threads)
    model = SentenceTransformer(source, device="cpu")
    model.eval()
    return model
