"""Anthropic Messages <-> OpenAI chat completions, including the stream event sequence."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sage_gateway.anthropic import MessageStreamTranslator, chat_to_message, encode_events, messages_to_chat
from sage_wire.errors import WireError
from sage_wire.sse import SSEDecoder


def test_request_translates_system_messages_and_sampling() -> None:
    chat = messages_to_chat(
        {
            "model": "echo",
            "max_tokens": 32,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
                {"role": "user", "content": [{"type": "text", "text": "Bye"}]},
            ],
            "temperature": 0.2,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u1"},
            "stream": True,
        }
    )
    assert chat == {
        "model": "echo",
        "max_tokens": 32,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "u1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_tools_and_tool_results_translate() -> None:
    chat = messages_to_chat(
        {
            "model": "m",
            "max_tokens": 8,
            "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "weather"},
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
            ],
        }
    )
    assert chat["tools"][0]["function"]["name"] == "weather"
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert chat["messages"][1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": "{}"}
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "sunny"}


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages[0]"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_invalid_requests_name_the_field(request_body: dict[str, Any], param: str) -> None:
    with pytest.raises(WireError) as caught:
        messages_to_chat(request_body)
    assert caught.value.status == 400
    assert caught.value.param == param


def test_response_translates_text_usage_and_stop_reason() -> None:
    chat = {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    message = chat_to_message(chat, "echo")
    assert message == {
        "id": "msg_chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "echo",
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }


def test_response_names_the_stop_sequence_that_matched() -> None:
    chat = {"choices": [{"message": {"content": "a"}, "finish_reason": "stop", "stop_reason": "END"}]}
    message = chat_to_message(chat, "m")
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")


def test_response_translates_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    chat = {"choices": [{"message": {"content": None, "tool_calls": [call]}, "finish_reason": "tool_calls"}]}
    message = chat_to_message(chat, "m")
    assert message["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}}]
    assert message["stop_reason"] == "tool_use"


def _chunk(content: str | None = None, finish: str | None = None, usage: dict[str, int] | None = None) -> Any:
    delta = {"content": content} if content is not None else {}
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c", "object": "chat.completion.chunk", "choices": choices, "usage": usage}


def test_stream_translates_to_the_messages_event_sequence() -> None:
    translator = MessageStreamTranslator("echo", "msg_1")
    events = []
    for chunk in [
        _chunk(""),
        _chunk("Hel"),
        _chunk("lo"),
        _chunk(finish="stop"),
        _chunk(usage={"prompt_tokens": 2, "completion_tokens": 2}),
    ]:
        events += translator.feed(chunk)
    events += translator.finish()
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    texts = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
    assert texts == ["Hel", "lo"]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"]["output_tokens"] == 2


def test_stream_tool_call_becomes_a_tool_use_block() -> None:
    translator = MessageStreamTranslator("m", "msg_1")
    call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"x"'}}
    more = {"index": 0, "function": {"arguments": ": 1}"}}
    events = translator.feed({"choices": [{"delta": {"tool_calls": [call]}}]})
    events += translator.feed({"choices": [{"delta": {"tool_calls": [more]}, "finish_reason": "tool_calls"}]})
    events += translator.finish()
    start = next(data for name, data in events if name == "content_block_start")
    assert start["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    partial = [data["delta"]["partial_json"] for name, data in events if name == "content_block_delta"]
    assert "".join(partial) == '{"x": 1}'
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_encoded_events_decode_back_in_order() -> None:
    translator = MessageStreamTranslator("m", "msg_1")
    raw = encode_events(translator.feed(_chunk("a")) + translator.finish())
    decoder = SSEDecoder()
    decoded = []
    for index in range(0, len(raw), 7):  # arbitrary chunk boundaries
        decoded += decoder.feed(raw[index : index + 7])
    types = [orjson.loads(data)["type"] for data in decoded]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
