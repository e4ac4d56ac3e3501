"""The deterministic test models: seeded hash embeddings and an echo chat. No weights at all.

For conformance and load tests of everything around an engine (gateway, operator, local mode):
the same input always gives the same vector and the same reply, on every machine.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

DEFAULT_DIMENSIONS = 64
CONTEXT_LENGTH = 4096
_WORD = re.compile(r"\s*\S+")


def hash_embedding(item: str | Sequence[int], dimensions: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """A unit vector drawn from a generator seeded by the input's SHA-256."""
    key = item if isinstance(item, str) else ",".join(str(token) for token in item)
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    generator = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    vector = generator.standard_normal(dimensions).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def words(text: str) -> list[str]:
    """The echo model's tokens: words with their leading whitespace (joining gives the text)."""
    return _WORD.findall(text)


def count_tokens(text: str) -> int:
    return len(words(text))


def echo_reply(messages: Sequence[dict[str, str]]) -> str:
    """The reply to a conversation: the last user message, echoed."""
    user = [m["content"] for m in messages if m["role"] == "user"]
    return f"echo: {user[-1] if user else ''}".strip()


def echo_tokens(reply: str, max_tokens: int) -> Iterator[str]:
    """The reply one word at a time, at most `max_tokens` words."""
    yield from words(reply)[:max_tokens]


def render_conversation(messages: Sequence[dict[str, str]]) -> str:
    """The prompt the echo model "sees", used for token counting."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
