"""Header names and media types both protocols use (pure)."""

from __future__ import annotations

from typing import Final

JSON: Final = "application/json"
EVENT_STREAM: Final = "text/event-stream"
REQUEST_ID: Final = "x-request-id"
"""The request's id: the client's own, or one the gateway makes; sent upstream and back."""

RawHeaders = list[tuple[bytes, bytes]]
"""Headers as ASGI carries them: (name, value) pairs of bytes, names lower-case."""
