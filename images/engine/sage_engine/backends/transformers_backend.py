"""A causal LM on CPU with transformers: chat template, token-by-token generation with a KV
cache, seeded sampling, and LoRA adapters through peft (loaded and unloaded at run time).

All methods that touch the model run on the engine's single generation thread, so switching the
active adapter can never race a generation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from sage_engine.backends.base import EmbeddingBatch, EmbeddingItem, Prompt
from sage_engine.backends.sampling import next_token
from sage_engine.errors import bad_request
from sage_engine.generation import SamplingParams

INCOMPLETE_CHARACTER = "\ufffd"


class TransformersBackend:
    kind = "llm"

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.base = model
        self.model = model
        self.tokenizer = tokenizer
        config = model.config
        self.limit = int(getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length)
        self.stop_ids = self._stop_token_ids(model, tokenizer)
        self._adapters: dict[str, str] = {}

    @staticmethod
    def _stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
        ids: set[int] = set()
        for source in (model.generation_config.eos_token_id, model.config.eos_token_id, tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list):
                ids.update(int(i) for i in source)
        return ids

    @classmethod
    def load(cls, source: str, threads: int) -> TransformersBackend:
        """`source`: a folder or a cached hub id, as `model_source.resolve_model` gives it."""
        torch.set_num_threads(threads)
        tokenizer = AutoTokenizer.from_pretrained(source)
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        model.eval()
        return cls(model, tokenizer)

    # --- generation ---------------------------------------------------------------------
    def supports_embeddings(self) -> bool:
        return False

    def supports_generation(self) -> bool:
        return True

    def context_length(self) -> int:
        return self.limit

    def default_max_tokens(self, prompt_tokens: int) -> int:
        return max(1, self.limit - prompt_tokens)

    def chat_prompt(self, messages: list[dict[str, str]]) -> Prompt:
        if not getattr(self.tokenizer, "chat_template", None):
            msg = "this model's tokenizer has no chat template; use /v1/completions"
            raise ValueError(msg)
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return Prompt(list(self.tokenizer(text, add_special_tokens=False)["input_ids"]))

    def text_prompt(self, prompt: str | list[int]) -> Prompt:
        if isinstance(prompt, str):
            return Prompt(list(self.tokenizer(prompt)["input_ids"]))
        vocabulary = len(self.tokenizer)
        if any(not 0 <= token < vocabulary for token in prompt):
            msg = f"token ids must be between 0 and {vocabulary - 1}"
            raise ValueError(msg)
        return Prompt(list(prompt))

    @contextlib.contextmanager
    def _active(self, adapter: str | None) -> Iterator[Any]:
        if not isinstance(self.model, PeftModel):
            yield self.model
        elif adapter is None:
            with self.model.disable_adapter():
                yield self.model
        else:
            self.model.set_adapter(adapter)
            yield self.model

    def generate(self, prompt: Prompt, params: SamplingParams, adapter: str | None) -> Iterator[str]:
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        generated: list[int] = []
        sent = ""
        with torch.inference_mode(), self._active(adapter) as model:
            step_input = torch.tensor([prompt.token_ids], dtype=torch.long)
            past = None
            for _ in range(params.max_tokens):
                output = model(input_ids=step_input, past_key_values=past, use_cache=True)
                past = output.past_key_values
                token = next_token(output.logits[0, -1], params.temperature, params.top_p, generator)
                if token in self.stop_ids:
                    return
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                # A multi-byte character split across tokens shows as U+FFFD until complete.
                if text.endswith(INCOMPLETE_CHARACTER):
                    yield ""
                else:
                    yield text[len(sent) :]
                    sent = text
                step_input = torch.tensor([[token]], dtype=torch.long)

    # --- LoRA adapters --------------------------------------------------------------------
    def adapter_names(self) -> list[str]:
        return list(self._adapters)

    def load_adapter(self, name: str, path: str) -> None:
        if name in self._adapters:
            raise bad_request(f"The LoRA adapter '{name}' has already been loaded.", "lora_name")
        folder = Path(path)
        if not (folder / "adapter_config.json").is_file():
            raise bad_request(f"No LoRA adapter at '{path}' (no adapter_config.json there).", "lora_path")
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(folder), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.base, str(folder), adapter_name=name)
            self.model.eval()
        except (ValueError, RuntimeError, KeyError, OSError) as error:
            raise bad_request(f"The LoRA adapter at '{path}' does not fit this model: {error}", "lora_path") from None
        self._adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        if name not in self._adapters:
            raise bad_request(f"The LoRA adapter '{name}' cannot be found.", "lora_name")
        del self._adapters[name]
        if not self._adapters:
            # Removing the last adapter restores the plain base model.
            self.model = self.model.unload()
            self.base = self.model
        else:
            self.model.set_adapter(next(iter(self._adapters)))
            self.model.delete_adapter(name)

    # --- not an embedding model -----------------------------------------------------------
    def embedding_dimensions(self) -> int:
        return 0

    def supports_dimensions(self, dimensions: int) -> bool:
        return False

    def max_input_tokens(self) -> int:
        return self.limit

    def vocabulary_size(self) -> int:
        return len(self.tokenizer)

    def embed(self, items: list[EmbeddingItem], *, alone: bool = False) -> EmbeddingBatch:
        return EmbeddingBatch(np.zeros((len(items), 0), dtype=np.float32), [0] * len(items))
