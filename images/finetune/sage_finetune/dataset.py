"""Parsing a JSONL training set into typed examples. Pure: text in, examples or an error out.

Each non-blank line is one JSON object whose shape depends on the format:

- chat: `{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}`
- instruction: `{"prompt": "...", "completion": "..."}`
- text: `{"text": "..."}`

The first malformed line stops parsing with a `DatasetError` naming its line number, so a user
fixes the file before any GPU time is spent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from sage_api.finetune import DatasetFormat
from sage_finetune.exits import InvalidInputError

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class DatasetError(InvalidInputError, ValueError):
    """A dataset line (or the whole file) cannot be used for training."""

    def __init__(self, message: str, line_number: int | None = None) -> None:
        self.line_number = line_number
        super().__init__(f"line {line_number}: {message}" if line_number is not None else message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatMessage(_Strict):
    """One turn of a conversation (OpenAI's chat fine-tuning format: `name` and `weight` too)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str | None = None
    weight: Literal[0, 1] | None = None
    """On an assistant turn, 0 keeps it as context without training on it."""

    @property
    def trained(self) -> bool:
        return self.role == "assistant" and self.weight != 0

    def for_template(self) -> dict[str, str]:
        """What the chat template sees: role, content and, when set, name."""
        return self.model_dump(include={"role", "content", "name"}, exclude_none=True)


class ChatExample(_Strict):
    """A conversation; the model learns the assistant turns."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]


class InstructionExample(_Strict):
    """A prompt and the completion the model learns."""

    prompt: str
    completion: NonEmpty


class TextExample(_Strict):
    """Plain text; the model learns all of it."""

    text: NonEmpty


Example = ChatExample | InstructionExample | TextExample

_EXAMPLE_TYPES: dict[DatasetFormat, type[Example]] = {
    DatasetFormat.CHAT: ChatExample,
    DatasetFormat.INSTRUCTION: InstructionExample,
    DatasetFormat.TEXT: TextExample,
}


_SHAPES: dict[DatasetFormat, str] = {
    DatasetFormat.CHAT: '{"messages": [{"role": ..., "content": ...}, ...]}',
    DatasetFormat.INSTRUCTION: '{"prompt": ..., "completion": ...}',
    DatasetFormat.TEXT: '{"text": ...}',
}


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "line"
    return f"{where}: {first['msg']}"


def parse_line(text: str, dataset_format: DatasetFormat, line_number: int) -> Example:
    """One JSONL line as an example of `dataset_format`, or a `DatasetError` naming the line."""
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"not valid JSON ({error.msg} at column {error.colno})", line_number) from None
    if not isinstance(value, dict):
        raise DatasetError(f"expected a JSON object, got {type(value).__name__}", line_number)
    try:
        example = _EXAMPLE_TYPES[dataset_format].model_validate(value)
    except ValidationError as error:
        shape = _SHAPES[dataset_format]
        message = f"not a valid {dataset_format.value} example {shape}: {_describe(error)}"
        raise DatasetError(message, line_number) from None
    if isinstance(example, ChatExample) and not any(m.trained for m in example.messages):
        msg = "a chat example needs at least one assistant message (without weight 0) to learn from"
        raise DatasetError(msg, line_number)
    return example


@dataclass(frozen=True)
class NumberedExample:
    """An example and the line it came from (for errors found later, e.g. while tokenizing)."""

    line_number: int
    example: Example


def parse_dataset(lines: Iterable[str], dataset_format: DatasetFormat) -> list[NumberedExample]:
    """Every non-blank line parsed; fails on the first bad line and on an empty dataset."""
    examples = [
        NumberedExample(number, parse_line(line, dataset_format, number))
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]
    if not examples:
        raise DatasetError("the dataset has no examples (every line is blank)")
    return examples
