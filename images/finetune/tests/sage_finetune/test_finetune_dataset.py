"""Dataset parsing: each format, and a malformed line fails naming its line number."""

from __future__ import annotations

import json

import pytest

from sage_api.finetune import DatasetFormat
from sage_finetune.dataset import (
    ChatExample,
    DatasetError,
    InstructionExample,
    TextExample,
    parse_dataset,
)

CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})


def test_each_format_parses_into_its_example_type() -> None:
    chat = parse_dataset([CHAT], DatasetFormat.CHAT)
    instruction = parse_dataset(['{"prompt": "2+2=", "completion": "4"}'], DatasetFormat.INSTRUCTION)
    text = parse_dataset(['{"text": "plain words"}'], DatasetFormat.TEXT)

    assert isinstance(chat[0].example, ChatExample)
    assert [m.role for m in chat[0].example.messages] == ["user", "assistant"]
    assert instruction[0].example == InstructionExample(prompt="2+2=", completion="4")
    assert text[0].example == TextExample(text="plain words")


def test_blank_lines_are_skipped_but_keep_the_numbering() -> None:
    examples = parse_dataset(["", CHAT, "   ", CHAT], DatasetFormat.CHAT)

    assert [e.line_number for e in examples] == [2, 4]


@pytest.mark.parametrize(
    ("lines", "dataset_format", "line_number", "detail"),
    [
        ([CHAT, CHAT, '{"messages": [}'], DatasetFormat.CHAT, 3, "not valid JSON"),
        ([CHAT, "[1, 2]"], DatasetFormat.CHAT, 2, "expected a JSON object, got list"),
        ([CHAT, '{"text": "wrong format"}'], DatasetFormat.CHAT, 2, "chat example"),
        (
            ['{"messages": [{"role": "user", "content": "no answer"}]}'],
            DatasetFormat.CHAT,
            1,
            "needs at least one assistant message",
        ),
        (
            [CHAT.replace('"content": "hello"}', '"content": "hello", "weight": 0}')],
            DatasetFormat.CHAT,
            1,
            "needs at least one assistant message (without weight 0)",
        ),
        ([CHAT.replace('"content": "hello"}', '"content": "hello", "weight": 2}')], DatasetFormat.CHAT, 1, "weight"),
        ([CHAT.replace('"user"', '"narrator"')], DatasetFormat.CHAT, 1, "messages.0.role"),
        (['{"prompt": "p"}'], DatasetFormat.INSTRUCTION, 1, "completion: Field required"),
        (['{"text": ""}'], DatasetFormat.TEXT, 1, "text: String should have at least 1 character"),
        (['{"text": "ok", "extra": 1}'], DatasetFormat.TEXT, 1, "extra: Extra inputs"),
    ],
)
def test_a_malformed_line_fails_naming_its_line_number(
    lines: list[str], dataset_format: DatasetFormat, line_number: int, detail: str
) -> None:
    with pytest.raises(DatasetError) as caught:
        parse_dataset(lines, dataset_format)

    assert str(caught.value).startswith(f"line {line_number}: ")
    assert detail in str(caught.value)
    assert caught.value.line_number == line_number


def test_an_empty_dataset_is_refused() -> None:
    with pytest.raises(DatasetError, match="no examples"):
        parse_dataset(["", "  "], DatasetFormat.TEXT)
