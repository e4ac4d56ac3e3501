"""The deterministic TEST backend: hash embeddings and an echo chat, no weights, no torch.

It serves every route (embeddings, chat, completions, adapters) so the gateway, the operator and
local mode can be tested against a real engine process in milliseconds. Never for production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from sage_engine import deterministic
from sage_engine.backends.base import EmbeddingBatch, EmbeddingItem, Prompt
from sage_engine.errors import bad_request
from sage_engine.generation import SamplingParams


class DeterministicBackend:
    kind = "test"

    def __init__(self, model: str, dimensions: int, token_seconds: float = 0.0) -> None:
        self.model = model
        self.dimensions = dimensions
        self.token_seconds = token_seconds
        """A pause before each generated token: a real model's decode time, for drain and load tests."""
        self._adapters: dict[str, str] = {}

    def supports_embeddings(self) -> bool:
        return True

    def supports_generation(self) -> bool:
        return True

    def embedding_dimensions(self) -> int:
        return self.dimensions

    def supports_dimensions(self, dimensions: int) -> bool:
        return dimensions <= self.dimensions

    def max_input_tokens(self) -> int:
        return deterministic.CONTEXT_LENGTH

    def vocabulary_size(self) -> int:
        return 2**31

    def embed(self, items: list[EmbeddingItem], *, alone: bool = False) -> EmbeddingBatch:
        vectors = np.stack([deterministic.hash_embedding(item, self.dimensions) for item in items])
        counts = [deterministic.count_tokens(item) if isinstance(item, str) else len(item) for item in items]
        return EmbeddingBatch(vectors, counts)

    def context_length(self) -> int:
        return deterministic.CONTEXT_LENGTH

    def default_max_tokens(self, prompt_tokens: int) -> int:
        return max(1, self.context_length() - prompt_tokens)

    def chat_prompt(self, messages: list[dict[str, str]]) -> Prompt:
        rendered = deterministic.render_conversation(messages)
        tokens = deterministic.count_tokens(rendered)
        return Prompt(list(range(tokens)), deterministic.echo_reply(messages))

    def text_prompt(self, prompt: str | list[int]) -> Prompt:
        if isinstance(prompt, str):
            return Prompt(list(range(deterministic.count_tokens(prompt))), prompt)
        return Prompt(list(prompt), " ".join(str(token) for token in prompt))

    def generate(self, prompt: Prompt, params: SamplingParams, adapter: str | None) -> Iterator[str]:
        reply = f"[{adapter}] {prompt.reply}" if adapter is not None else prompt.reply
        for token in deterministic.echo_tokens(reply, params.max_tokens):
            if self.token_seconds:
                time.sleep(self.token_seconds)  # on the generation thread, as a model's forward pass
            yield token

    def adapter_names(self) -> list[str]:
        return list(self._adapters)

    def load_adapter(self, name: str, path: str) -> None:
        if name in self._adapters:
            raise bad_request(f"The LoRA adapter '{name}' has already been loaded.", "lora_name")
        self._adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        if self._adapters.pop(name, None) is None:
            raise bad_request(f"The LoRA adapter '{name}' cannot be found.", "lora_name")
