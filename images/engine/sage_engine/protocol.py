"""OpenAI request bodies: parsing, validation and normalisation, with no web framework.

Each `parse_*` function takes the raw body bytes and returns a validated request or raises an
`WireError` (400) naming the offending field, so the HTTP layer never sees a traceback.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sage_engine.errors import WireError, bad_request

MAX_STOP_SEQUENCES = 16


class _Request(BaseModel):
    # Clients send fields we do not use (user, metadata, ...); ignore them like OpenAI does.
    model_config = ConfigDict(extra="ignore")


class EmbeddingRequest(_Request):
    model: str | None = None
    input: Any = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


class SamplingRequest(_Request):
    """The fields chat and completions share."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | int | None = None

    @field_validator("n")
    @classmethod
    def _only_one_choice(cls, value: int) -> int:
        if value != 1:
            msg = "only n=1 is supported by this engine"
            raise ValueError(msg)
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if len(value) > MAX_STOP_SEQUENCES:
                msg = f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed"
                raise ValueError(msg)
            if any(item == "" for item in value):
                msg = "stop sequences must not be empty strings"
                raise ValueError(msg)
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None) -> bool | int | None:
        if value:
            msg = "logprobs are not supported by this engine"
            raise ValueError(msg)
        return value

    def stop_sequences(self) -> list[str]:
        if self.stop is None or self.stop == "":
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def include_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class StreamOptions(_Request):
    include_usage: bool = False


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": message.role, "content": message.text()} for message in self.messages]


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] = Field(union_mode="left_to_right")
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str] | list[int]) -> str | list[str] | list[int]:
        if isinstance(value, list):
            if not value:
                msg = "prompt must not be empty"
                raise ValueError(msg)
            if isinstance(value[0], str) and len(value) != 1:
                msg = "only one prompt per request is supported by this engine"
                raise ValueError(msg)
        return value

    def prompt_text_or_ids(self) -> str | list[int]:
        if isinstance(self.prompt, list) and isinstance(self.prompt[0], str):
            return str(self.prompt[0])
        if isinstance(self.prompt, list):
            return [int(token) for token in self.prompt]
        return self.prompt


class LoadAdapterRequest(_Request):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)


class UnloadAdapterRequest(_Request):
    lora_name: str = Field(min_length=1)
    lora_int_id: int | None = None


SamplingRequest.model_rebuild()
ChatRequest.model_rebuild()
CompletionRequest.model_rebuild()

RequestT = TypeVar("RequestT", bound=BaseModel)


def _param_of(location: tuple[int | str, ...]) -> str | None:
    # Union members show up in the location as type names; keep only real field names/indexes.
    parts = [str(part) for part in location if isinstance(part, int) or part.isidentifier()]
    kept = [p for p in parts if p not in {"str", "list", "int", "TextPart"}]
    return ".".join(kept) or None


def parse_body(model: type[RequestT], raw: bytes) -> RequestT:
    """Decode JSON and validate it into `model`, or raise a 400 naming the field."""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as error:
        raise bad_request(f"The request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = _param_of(tuple(first["loc"]))
        message = first["msg"].removeprefix("Value error, ")
        where = f"'{param}'" if param else "the request"
        raise bad_request(f"Invalid value for {where}: {message}.", param=param) from None


EmbeddingInput = list[str] | list[list[int]]


def normalize_embedding_input(value: Any, max_inputs: int) -> EmbeddingInput:
    """`input` as a list of texts or a list of token-id lists; every malformed shape is a 400."""
    if value is None:
        raise bad_request("'input' is required.", param="input")
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        if not value:
            raise bad_request("'input' must not be an empty list.", param="input")
        items = [value] if all(_is_token(v) for v in value) else value
    else:
        raise bad_request(
            "'input' must be a string, a list of strings, or a list of token-id lists.",
            param="input",
        )
    if len(items) > max_inputs:
        raise bad_request(
            f"'input' has {len(items)} items; this engine accepts at most {max_inputs} per request.",
            param="input",
        )
    if all(isinstance(item, str) for item in items):
        if any(item == "" for item in items):
            raise bad_request("'input' must not contain empty strings.", param="input")
        return [str(item) for item in items]
    if all(isinstance(item, list) and all(_is_token(t) for t in item) for item in items):
        if any(not item for item in items):
            raise bad_request("'input' must not contain empty token lists.", param="input")
        if any(t < 0 for item in items for t in item):
            raise bad_request("token ids in 'input' must not be negative.", param="input")
        return [[int(t) for t in item] for item in items]
    raise bad_request(
        "'input' must be a string, a list of strings, or a list of token-id lists (not a mix).",
        param="input",
    )


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def input_too_long(index: int, tokens: int, limit: int, param: str = "input") -> WireError:
    return bad_request(
        f"Input {index} has {tokens} tokens; this model accepts at most {limit} tokens per input.",
        param=param,
        code="context_length_exceeded",
    )


def context_too_long(prompt_tokens: int, max_tokens: int, limit: int, param: str) -> WireError:
    return bad_request(
        f"The prompt has {prompt_tokens} tokens and max_tokens asks for {max_tokens} more; "
        f"this model's context length is {limit} tokens.",
        param=param,
        code="context_length_exceeded",
    )
