"""Which text of an example the model learns. Pure: an example in, labelled text segments out.

A segment is a piece of the rendered example plus whether its tokens carry loss. Text examples
are one trained segment; instruction examples are the prompt (not trained) then the completion
(trained). Chat examples are rendered with the tokenizer's chat template; the assistant turns are
found by rendering the conversation incrementally: the text between "everything before turn i,
with the generation prompt" and "everything up to and including turn i" is what the assistant
says (including the template's end-of-turn marker, so the model learns to stop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sage_finetune.dataset import (
    ChatExample,
    ChatMessage,
    DatasetError,
    Example,
    InstructionExample,
)

# render(messages, add_generation_prompt) -> the chat template's text for those messages.
RenderChat = Callable[[Sequence[ChatMessage], bool], str]


@dataclass(frozen=True)
class Segment:
    """A piece of an example's text; `trained` pieces contribute to the loss."""

    text: str
    trained: bool


def segments_for(example: Example, render_chat: RenderChat | None = None) -> list[Segment]:
    """The example as consecutive segments whose concatenation is its full training text."""
    if isinstance(example, ChatExample):
        if render_chat is None:
            raise DatasetError("chat examples need a tokenizer with a chat template")
        return chat_segments(example.messages, render_chat)
    if isinstance(example, InstructionExample):
        prompt = [Segment(example.prompt, trained=False)] if example.prompt else []
        return [*prompt, Segment(example.completion, trained=True)]
    return [Segment(example.text, trained=True)]


def chat_segments(messages: Sequence[ChatMessage], render_chat: RenderChat) -> list[Segment]:
    """Split the rendered conversation into untrained context and trained assistant turns
    (assistant turns with weight 0 stay context)."""
    full = render_chat(messages, False)
    segments: list[Segment] = []
    consumed = 0
    for index, message in enumerate(messages):
        if not message.trained:
            continue
        before = render_chat(messages[:index], True) if index else _generation_prompt_only(render_chat)
        through = render_chat(messages[: index + 1], False)
        if not (through.startswith(before) and full.startswith(through) and len(before) >= consumed):
            msg = (
                "the tokenizer's chat template does not render conversations incrementally "
                f"(turn {index} changes earlier text), so assistant turns cannot be isolated"
            )
            raise DatasetError(msg)
        if len(before) > consumed:
            segments.append(Segment(full[consumed : len(before)], trained=False))
        segments.append(Segment(full[len(before) : len(through)], trained=True))
        consumed = len(through)
    if consumed < len(full):
        segments.append(Segment(full[consumed:], trained=False))
    return segments


def _generation_prompt_only(render_chat: RenderChat) -> str:
    # A conversation that opens with an assistant turn: the prefix is whatever the template emits
    # for no messages plus the generation prompt (often a BOS and "<assistant>" header).
    return render_chat([], True)
