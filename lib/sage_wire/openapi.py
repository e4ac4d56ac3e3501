"""The OpenAPI description of the `/v1` API SAGE's servers speak (pure): the OpenAI routes both
the gateway and the engine serve, and the Anthropic Messages route only the gateway serves.
Served at `/openapi.json`; the fuzz tests generate requests from it (valid and invalid alike)."""

from __future__ import annotations

from typing import Any

TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
}
TOKENS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}


def _error() -> dict[str, Any]:
    return {
        "description": "An error envelope",
        "content": {"application/json": {"schema": {"type": "object", "required": ["error"]}}},
    }


def _operation(summary: str, body: dict[str, Any] | None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "The answer (JSON, or server-sent events when streaming)"}},
    }
    for status in ("400", "401", "404", "413", "429", "503"):
        operation["responses"][status] = _error()
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _sampling(max_tokens: int) -> dict[str, Any]:
    return {
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": max_tokens},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
        "seed": {"type": "integer"},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    }


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _model(models: list[str] | None) -> dict[str, Any]:
    return {"type": "string", "enum": models} if models else {"type": "string", "minLength": 1}


def openai_api(*, models: list[str] | None = None, max_tokens: int = 1 << 20, anthropic: bool = True) -> dict[str, Any]:
    """The description. `models` narrows `model` to names that exist (for fuzzing a server with
    known models), `max_tokens` bounds generation lengths, `anthropic` adds `/v1/messages`."""
    model = _model(models)
    chat = _object(
        ["model", "messages"],
        {
            "model": model,
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    ["role", "content"],
                    {
                        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
                        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART}]},
                    },
                ),
            },
            **_sampling(max_tokens),
        },
    )
    completion = _object(
        ["model", "prompt"],
        {
            "model": model,
            "prompt": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    TOKENS,
                    {"type": "array", "items": TOKENS, "minItems": 1},
                ]
            },
            **_sampling(max_tokens),
        },
    )
    embedding = _object(
        ["model", "input"],
        {
            "model": model,
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
        },
    )
    paths: dict[str, Any] = {
        "/v1/chat/completions": {"post": _operation("Chat completion", chat)},
        "/v1/completions": {"post": _operation("Text completion", completion)},
        "/v1/embeddings": {"post": _operation("Embeddings", embedding)},
        "/v1/models": {"get": _operation("The models served", None)},
    }
    if anthropic:
        block = {"oneOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART, "minItems": 1}]}
        message = _object(
            ["role", "content"], {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": block}
        )
        messages = _object(
            ["model", "max_tokens", "messages"],
            {
                "model": model,
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": max_tokens},
                "messages": {"type": "array", "items": message, "minItems": 1},
                "system": {"type": "string"},
                "stream": {"type": "boolean"},
                "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            },
        )
        paths["/v1/messages"] = {"post": _operation("Anthropic Messages", messages)}
    return {
        "openapi": "3.0.3",
        "info": {"title": "SAGE OpenAI-compatible API", "version": "1"},
        "paths": paths,
    }


def bounded(description: dict[str, Any], *, items: int = 3, chars: int = 40) -> dict[str, Any]:
    """A copy whose arrays hold at most `items` and whose free strings at most `chars`: the same
    API, in a form a fuzzer generates cases for quickly (long inputs are the body limit's matter)."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: walk(value) for key, value in node.items()}
        if out.get("type") == "array":
            out.setdefault("maxItems", items)
        if out.get("type") == "string" and "enum" not in out:
            out.setdefault("maxLength", chars)
        return out

    result: dict[str, Any] = walk(description)
    return result
