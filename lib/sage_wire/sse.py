"""Server-sent events, as the OpenAI and Anthropic streaming APIs frame them (pure): compact JSON
on one `data:` line, a blank line after each event, `data: [DONE]` closing an OpenAI stream."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
DONE_DATA = b"[DONE]"


def data_event(payload: dict[str, Any]) -> bytes:
    """One unnamed event (OpenAI streams)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_event(name: str, payload: dict[str, Any]) -> bytes:
    """One event with an `event:` line (Anthropic streams)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the `data:` payload of each complete event."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return events
            line = self._buffer[:newline].rstrip(b"\r")
            self._buffer = self._buffer[newline + 1 :]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].lstrip(b" "))
            # other fields (event:, id:, retry:) and comments carry nothing a relay needs

    def flush(self) -> list[bytes]:
        """Whatever is left when the stream ends without a final blank line."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        self._buffer = b""
        return events


def data_payloads(stream: bytes) -> list[bytes]:
    """The `data:` payloads of a complete SSE body."""
    decoder = SSEDecoder()
    return decoder.feed(stream) + decoder.flush()
