"""Which tokens carry loss: segments of each format, and the labels the tokenizer produces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from sage_api.finetune import DatasetFormat
from sage_finetune.dataset import ChatMessage, DatasetError, parse_dataset
from sage_finetune.encoding import IGNORE_INDEX, collate, encode_dataset
from sage_finetune.segments import Segment, chat_segments, segments_for


def bracket_template(messages: Sequence[ChatMessage], add_generation_prompt: bool) -> str:
    text = "".join(f"[{m.role}]{m.content}[/]" for m in messages)
    return text + ("[assistant]" if add_generation_prompt else "")


def messages(*pairs: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role=role, content=content) for role, content in pairs]


def test_chat_trains_every_assistant_turn_and_nothing_else() -> None:
    conversation = messages(
        ("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("user", "bye"), ("assistant", "ciao")
    )

    segments = chat_segments(conversation, bracket_template)

    assert segments == [
        Segment("[system]be brief[/][user]hi[/][assistant]", trained=False),
        Segment("hello[/]", trained=True),
        Segment("[user]bye[/][assistant]", trained=False),
        Segment("ciao[/]", trained=True),
    ]
    assert "".join(s.text for s in segments) == bracket_template(conversation, False)


def test_an_assistant_turn_with_weight_0_is_context_not_training() -> None:
    conversation = [
        ChatMessage(role="user", content="hi"),
        ChatMessage(role="assistant", content="bad answer", weight=0),
        ChatMessage(role="user", content="again"),
        ChatMessage(role="assistant", content="good answer", weight=1),
    ]

    segments = chat_segments(conversation, bracket_template)

    assert [s for s in segments if s.trained] == [Segment("good answer[/]", trained=True)]
    assert "".join(s.text for s in segments) == bracket_template(conversation, False)


def test_a_template_that_rewrites_earlier_turns_is_refused() -> None:
    def rewriting(msgs: Sequence[ChatMessage], add_generation_prompt: bool) -> str:
        return f"<{len(msgs)} turns>" + bracket_template(msgs, add_generation_prompt)

    with pytest.raises(DatasetError, match="does not render conversations incrementally"):
        chat_segments(messages(("user", "hi"), ("assistant", "hello")), rewriting)


def test_instruction_trains_the_completion_and_text_trains_everything() -> None:
    [instruction] = parse_dataset(['{"prompt": "Q:", "completion": " A"}'], DatasetFormat.INSTRUCTION)
    [text] = parse_dataset(['{"text": "all of it"}'], DatasetFormat.TEXT)

    assert segments_for(instruction.example) == [Segment("Q:", False), Segment(" A", True)]
    assert segments_for(text.example) == [Segment("all of it", True)]


def test_chat_labels_cover_exactly_the_assistant_answer(tiny_lm_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm_path))
    line = (
        '{"messages": [{"role": "user", "content": "What is the secret codeword?"},'
        ' {"role": "assistant", "content": "The codeword is zephyrine."}]}'
    )

    [example] = encode_dataset(parse_dataset([line], DatasetFormat.CHAT), tokenizer, DatasetFormat.CHAT, 256)

    trained = [token for token, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    trained_text = str(tokenizer.decode(trained))
    untrained_text = str(tokenizer.decode(example.input_ids[: len(example.input_ids) - len(trained)]))
    # The answer and the template's end-of-turn marker, nothing of the question.
    assert trained_text.startswith("The codeword is zephyrine.")
    assert 0 < len(trained_text) - len("The codeword is zephyrine.") < 16
    assert "What is the secret codeword?" in untrained_text
    assert example.labels[: len(example.input_ids) - len(trained)] == [IGNORE_INDEX] * (
        len(example.input_ids) - len(trained)
    )


def test_instruction_labels_end_with_eos_and_skip_the_prompt(tiny_lm_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm_path))
    lines = ['{"prompt": "Q: hi\\nA:", "completion": " hello"}']

    [example] = encode_dataset(
        parse_dataset(lines, DatasetFormat.INSTRUCTION), tokenizer, DatasetFormat.INSTRUCTION, 64
    )

    trained = [token for token, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == " hello" + tokenizer.eos_token


def test_an_example_with_nothing_left_after_truncation_names_its_line(tiny_lm_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm_path))
    lines = ['{"prompt": "short", "completion": "ok"}', '{"prompt": "' + "long " * 50 + '", "completion": "x"}']

    [short] = encode_dataset(
        parse_dataset(lines[:1], DatasetFormat.INSTRUCTION), tokenizer, DatasetFormat.INSTRUCTION, 16
    )
    assert not short.truncated
    with pytest.raises(DatasetError, match=r"^line 2: nothing left to learn within --max-seq-length 16"):
        encode_dataset(parse_dataset(lines, DatasetFormat.INSTRUCTION), tokenizer, DatasetFormat.INSTRUCTION, 16)


def test_collate_pads_right_and_ignores_padding_in_the_loss(tiny_lm_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm_path))
    lines = ['{"text": "a"}', '{"text": "a much longer line of text"}']
    encoded = encode_dataset(parse_dataset(lines, DatasetFormat.TEXT), tokenizer, DatasetFormat.TEXT, 64)

    batch = collate(encoded, tokenizer.pad_token_id)

    short = len(encoded[0].input_ids)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][0].tolist() == [1] * short + [0] * (batch["input_ids"].shape[1] - short)
    assert (batch["labels"][0, short:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][0, short:] == tokenizer.pad_token_id).all()


def test_long_examples_are_cut_to_max_seq_length_and_marked(tiny_lm_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm_path))
    lines = ['{"text": "a much longer line of text than four tokens"}']

    [example] = encode_dataset(parse_dataset(lines, DatasetFormat.TEXT), tokenizer, DatasetFormat.TEXT, 4)

    assert example.truncated
    assert len(example.input_ids) == len(example.labels) == 4
