"""The Anthropic Messages API translated to and from OpenAI chat completions (pure).

`messages_to_chat` turns a Messages request into a chat-completions request, `chat_to_message`
turns the chat response back, and `MessageStreamTranslator` turns a stream of chat chunks into the
Messages event sequence: message_start, content_block_start/delta/stop per block, message_delta,
message_stop. Text and tool use translate; other content blocks (images, documents) are refused
with a 400 that names them.
"""

from __future__ import annotations

from typing import Any

import orjson

from sage_gateway.auth.usage import Usage
from sage_gateway.errors import WireError, invalid_request
from sage_wire.sse import named_event

Event = tuple[str, dict[str, Any]]

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _text_blocks(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid_request(f"'{param}' must be a string or a list of content blocks.", param=param)
    texts = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise invalid_request(f"'{param}[{index}]' has type '{kind}'; only text is accepted here.", param=param)
        texts.append(str(block.get("text", "")))
    return "".join(texts)


def _tool_result_text(content: Any) -> str:
    if content is None:
        return ""
    return _text_blocks(content, "tool_result.content")


def _translate_message(message: Any, index: int) -> list[dict[str, Any]]:
    param = f"messages[{index}]"
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise invalid_request(f"'{param}' must be an object with role 'user' or 'assistant'.", param=param)
    role = message["role"]
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise invalid_request(f"'{param}.content' must be a string or a list of blocks.", param=f"{param}.content")
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    tool_results: list[dict[str, Any]] = []
    for block_index, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"{param}.content[{block_index}]"
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use" and role == "assistant":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            call = {"name": block.get("name", ""), "arguments": arguments}
            tool_calls.append({"id": block.get("id", ""), "type": "function", "function": call})
        elif kind == "tool_result" and role == "user":
            text = _tool_result_text(block.get("content"))
            tool_results.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text})
        else:
            raise invalid_request(f"'{where}' has type '{kind}', which this gateway does not translate.", param=where)
    translated: list[dict[str, Any]] = list(tool_results)
    if role == "assistant":
        reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if tool_calls:
            reply["tool_calls"] = tool_calls
        translated.append(reply)
    elif texts or not tool_results:
        translated.append({"role": "user", "content": "".join(texts)})
    return translated


def _tool_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        raise invalid_request("'tool_choice' must be an object.", param="tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    mapping = {"auto": "auto", "any": "required", "none": "none"}
    if kind not in mapping:
        raise invalid_request(f"'tool_choice.type' '{kind}' is not one of auto, any, tool, none.", param="tool_choice")
    return mapping[kind]


def messages_to_chat(request: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions request equivalent to the Messages `request`."""
    max_tokens = request.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid_request("'max_tokens' is required and must be a positive integer.", param="max_tokens")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty list.", param="messages")
    chat_messages: list[dict[str, Any]] = []
    system = request.get("system")
    if system is not None:
        chat_messages.append({"role": "system", "content": _text_blocks(system, "system")})
    for index, message in enumerate(messages):
        chat_messages.extend(_translate_message(message, index))
    chat: dict[str, Any] = {"model": request["model"], "messages": chat_messages, "max_tokens": max_tokens}
    for name in ("temperature", "top_p", "top_k"):
        if request.get(name) is not None:
            chat[name] = request[name]
    if request.get("stop_sequences"):
        chat["stop"] = request["stop_sequences"]
    user = (request.get("metadata") or {}).get("user_id") if isinstance(request.get("metadata"), dict) else None
    if user:
        chat["user"] = user
    if request.get("tools"):
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.get("name", ""),
                    "description": tool.get("description", ""),
                    "parameters": tool.get("input_schema") or {"type": "object"},
                },
            }
            for tool in request["tools"]
            if isinstance(tool, dict)
        ]
    if request.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(request["tool_choice"])
    if request.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _stop(choice: dict[str, Any]) -> tuple[str | None, str | None]:
    """(stop_reason, stop_sequence) of a chat choice."""
    matched = choice.get("stop_reason")  # vLLM and our engine name the stop string that matched
    if choice.get("finish_reason") == "stop" and isinstance(matched, str):
        return "stop_sequence", matched
    finish = choice.get("finish_reason")
    return (_STOP_REASONS.get(finish, "end_turn") if finish else None), None


def _usage(usage: Any) -> dict[str, int]:
    usage = usage if isinstance(usage, dict) else {}
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def _tool_input(arguments: Any) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": arguments}


def chat_to_message(chat: dict[str, Any], model: str) -> dict[str, Any]:
    """The Messages response equivalent to the chat-completions response `chat`."""
    choices = chat.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        raise WireError(502, "The upstream chat response has no choices.", "upstream_error")
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": _tool_input(function.get("arguments")),
            }
        )
    stop_reason, stop_sequence = _stop(choice)
    return {
        "id": f"msg_{chat.get('id', '')}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or "end_turn",
        "stop_sequence": stop_sequence,
        "usage": _usage(chat.get("usage")),
    }


class MessageStreamTranslator:
    """Chat-completion chunks in, Messages stream events out, in order."""

    def __init__(self, model: str, message_id: str) -> None:
        self.model = model
        self.message_id = message_id
        self._started = False
        self._block_index = -1
        self._block_kind: str | None = None
        self._tool_blocks: dict[int, int] = {}
        self._stop: tuple[str | None, str | None] = (None, None)
        self._usage = {"input_tokens": 0, "output_tokens": 0}

    @property
    def usage(self) -> Usage | None:
        """The usage seen so far (None before any)."""
        seen = Usage(self._usage["input_tokens"], self._usage["output_tokens"])
        return seen if seen.total else None

    def _start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": dict(self._usage),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close_block(self) -> list[Event]:
        if self._block_kind is None:
            return []
        self._block_kind = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._block_index})]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close_block()
        self._block_index += 1
        self._block_kind = kind
        start = {"type": "content_block_start", "index": self._block_index, "content_block": block}
        return [*events, ("content_block_start", start)]

    def _delta(self, delta: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": self._block_index, "delta": delta})

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events = self._start()
        if chunk.get("usage"):
            self._usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self._block_kind != "text":
                    events += self._open_block("text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": delta["content"]}))
            for call in delta.get("tool_calls") or []:
                events += self._feed_tool_call(call)
            if choice.get("finish_reason"):
                self._stop = _stop(choice)
        return events

    def _feed_tool_call(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        position = int(call.get("index", 0))
        function = call.get("function") or {}
        if position not in self._tool_blocks:
            block = {"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""), "input": {}}
            events += self._open_block("tool_use", block)
            self._tool_blocks[position] = self._block_index
        if function.get("arguments"):
            events.append(self._delta({"type": "input_json_delta", "partial_json": function["arguments"]}))
        return events

    @property
    def finished(self) -> bool:
        """Whether the upstream said why the answer ended (a finish_reason): a stream that ends
        without one was cut off."""
        return self._stop[0] is not None

    def finish(self) -> list[Event]:
        events = [*self._start(), *self._close_block()]
        stop_reason, stop_sequence = self._stop
        delta = {"stop_reason": stop_reason or "end_turn", "stop_sequence": stop_sequence}
        usage = {"output_tokens": self._usage["output_tokens"], "input_tokens": self._usage["input_tokens"]}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def error(self, envelope: dict[str, Any]) -> list[Event]:
        """An upstream error in the middle of a stream."""
        body = envelope.get("error") if isinstance(envelope.get("error"), dict) else {"message": str(envelope)}
        return [*self._start(), ("error", {"type": "error", "error": body})]


def encode_events(events: list[Event]) -> bytes:
    return b"".join(named_event(name, data) for name, data in events)
