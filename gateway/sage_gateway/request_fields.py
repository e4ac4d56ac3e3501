"""Read only what routing needs from a request body: model, stream, prompt prefix (pure).

The body itself is forwarded untouched; this module never re-serialises it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from sage_gateway.errors import WireError, invalid_request


@dataclass(slots=True)
class RoutingFields:
    model: str
    stream: bool
    affinity_key: str | None
    """The first characters of the prompt, or None where affinity does not apply."""
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The parsed body (read by the key limits, never forwarded: the body's own bytes are)."""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return "".join(text for text in texts if isinstance(text, str))
    return ""


def chat_prefix(messages: Any, limit: int) -> str | None:
    if not isinstance(messages, list) or limit <= 0:
        return None
    pieces: list[str] = []
    size = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        # The text cut at what the prefix can still take (a long prompt is not copied whole).
        piece = f"{message.get('role', '')}:{_text_of(message.get('content'))[: limit - size]}\n"
        pieces.append(piece)
        size += len(piece)
        if size >= limit:
            break
    joined = "".join(pieces)[:limit]
    return joined or None


def completion_prefix(prompt: Any, limit: int) -> str | None:
    """A string, a list of token ids, or a batch of either: the first prompt's prefix. Anything
    else (an empty list, deeper nesting) has no prefix; the engine judges whether it is valid."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], list | str):
        prompt = prompt[0]  # a batch of strings or token lists: the first one
    if isinstance(prompt, str):
        return prompt[:limit] or None
    if isinstance(prompt, list) and prompt and all(isinstance(token, int) for token in prompt):
        return ",".join(map(str, prompt[:limit]))[:limit] or None
    return None


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object in `body`, or a 400 that says what is wrong."""
    if not body:
        raise invalid_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise invalid_request(f"The request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(parsed, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return parsed


def require_model(parsed: dict[str, Any]) -> str:
    model = parsed.get("model")
    if model is None or model == "":
        raise WireError(400, "The request has no 'model'; name the model to use.", "missing_model", "model")
    if not isinstance(model, str):
        raise WireError(400, "'model' must be a string.", "invalid_model", "model")
    return model


def routing_fields(body: bytes, route: str, prefix_chars: int) -> RoutingFields:
    """`route` is chat, completions or embeddings."""
    parsed = parse_body(body)
    model = require_model(parsed)
    stream = parsed.get("stream") is True
    key: str | None = None
    if route == "chat":
        key = chat_prefix(parsed.get("messages"), prefix_chars)
    elif route == "completions":
        key = completion_prefix(parsed.get("prompt"), prefix_chars)
    return RoutingFields(model, stream, key, parsed)
