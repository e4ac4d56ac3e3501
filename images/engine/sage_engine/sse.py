"""Server-sent events framing for OpenAI streaming responses."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    """One `data: <json>` event; the JSON is compact and on one line, as OpenAI sends it."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def parse_events(stream: bytes) -> list[str]:
    """The `data:` payloads of a complete SSE body (used by tests and the benchmark)."""
    payloads = []
    for block in stream.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:"):
                payloads.append(line[len("data:") :].strip())
    return payloads
