"""OpenAI response bodies (plain dicts), built from backend results with no web framework."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sage_engine.generation import GenerationResult


def truncate_dimensions(vectors: npt.NDArray[np.float32], dimensions: int | None) -> npt.NDArray[np.float32]:
    """Matryoshka-style: keep the first `dimensions` values and re-normalise each row."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    kept = vectors[:, :dimensions]
    norms = np.linalg.norm(kept, axis=1, keepdims=True)
    return (kept / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def embedding_rows(rows: list[npt.NDArray[np.float32]], dimensions: int | None) -> Sequence[npt.NDArray[np.float32]]:
    """A batch's rows for one request: as they are (orjson writes each row directly), or
    truncated to `dimensions`."""
    if dimensions is None or dimensions >= len(rows[0]):
        return rows
    return list(truncate_dimensions(np.stack(rows), dimensions))


def encode_base64(vector: npt.NDArray[np.float32]) -> str:
    """OpenAI's base64 format: little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode()


def embedding_response(
    vectors: Sequence[npt.NDArray[np.float32]], model: str, encoding_format: str, prompt_tokens: int
) -> dict[str, Any]:
    if encoding_format == "base64":
        rows: list[Any] = [encode_base64(row) for row in vectors]
    else:
        rows = list(vectors)  # numpy rows; serialised by orjson directly
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def chat_completion(result: GenerationResult, model: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, result.completion_tokens),
    }


def text_completion(result: GenerationResult, model: str, prompt_tokens: int, prefix: str = "") -> dict[str, Any]:
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": prefix + result.text,
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, result.completion_tokens),
    }


class ChunkBuilder:
    """The chunks of one streamed response, all sharing id, created and model."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model = model
        self.chat = chat
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def role(self) -> dict[str, Any]:
        return self._chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
        )

    def text(self, piece: str) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}
        else:
            choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": None}
        return self._chunk([choice])

    def finish(self, reason: str) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
        return self._chunk([choice])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        chunk = self._chunk([])
        chunk["usage"] = usage(prompt_tokens, completion_tokens)
        return chunk


def model_list(names: list[str], adapters: list[str], root: str, created: int) -> dict[str, Any]:
    base = names[0]
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "sage", "root": root, "parent": None}
        for name in names
    ]
    data += [
        {"id": name, "object": "model", "created": created, "owned_by": "sage", "root": name, "parent": base}
        for name in adapters
    ]
    return {"object": "list", "data": data}
