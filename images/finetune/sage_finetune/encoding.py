"""Tokenizing examples into (input_ids, labels) and batching them into tensors.

Labels are the input ids where the loss applies and -100 (ignored by the loss) elsewhere: the
untrained segments, and the padding added when batching. Segments are tokenized one by one and
concatenated, which is what makes the trained/untrained boundary exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sage_api.finetune import DatasetFormat
from sage_finetune.dataset import ChatMessage, DatasetError, NumberedExample
from sage_finetune.segments import RenderChat, Segment, segments_for

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of one example and its labels (IGNORE_INDEX where no loss applies)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def chat_renderer(tokenizer: Any) -> RenderChat | None:
    """The tokenizer's chat template as a `RenderChat`, or None when it has none."""
    if not getattr(tokenizer, "chat_template", None):
        return None

    def render(messages: Sequence[ChatMessage], add_generation_prompt: bool) -> str:
        text: str = tokenizer.apply_chat_template(
            [m.for_template() for m in messages],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
        return text

    return render


def encode_segments(
    segments: Sequence[Segment],
    tokenizer: Any,
    max_length: int,
    *,
    add_special_tokens: bool,
    append_eos: bool,
) -> EncodedExample:
    """Token ids and labels of consecutive segments, truncated to `max_length` tokens.

    `add_special_tokens` lets the tokenizer add its BOS to the first segment (plain text); chat
    templates write their own. `append_eos` ends the example with a trained EOS so the model
    learns to stop (plain text and instruction examples; chat templates end turns themselves).
    """
    input_ids: list[int] = []
    labels: list[int] = []
    for index, segment in enumerate(segments):
        ids: list[int] = tokenizer(segment.text, add_special_tokens=add_special_tokens and index == 0)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if segment.trained else [IGNORE_INDEX] * len(ids))
    if append_eos and tokenizer.eos_token_id is not None:
        input_ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return EncodedExample(input_ids[:max_length], labels[:max_length], truncated=len(input_ids) > max_length)


def encode_dataset(
    examples: Sequence[NumberedExample],
    tokenizer: Any,
    dataset_format: DatasetFormat,
    max_length: int,
) -> list[EncodedExample]:
    """Every example tokenized; an example left with nothing to learn after truncation is an
    error naming its line (raise --max-seq-length or shorten the prompt)."""
    render = chat_renderer(tokenizer)
    if dataset_format is DatasetFormat.CHAT and render is None:
        raise DatasetError("format chat needs a tokenizer with a chat template; this one has none")
    plain = dataset_format is not DatasetFormat.CHAT
    encoded: list[EncodedExample] = []
    for item in examples:
        try:
            segments = segments_for(item.example, render)
        except DatasetError as error:
            raise DatasetError(str(error), item.line_number) from None
        example = encode_segments(segments, tokenizer, max_length, add_special_tokens=plain, append_eos=plain)
        if example.trained_tokens == 0:
            msg = f"nothing left to learn within --max-seq-length {max_length} tokens"
            raise DatasetError(msg, item.line_number)
        encoded.append(example)
    return encoded


def collate(batch: Sequence[EncodedExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask and labels (padding ignored by the loss)."""
    width = max(len(example.input_ids) for example in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, :length] = torch.tensor(example.labels, dtype=torch.long)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
