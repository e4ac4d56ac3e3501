"""Tokens a request costs (pure): estimated from the prompt before it goes out, then counted from
the engine's `usage`, on streams too (the gateway asks for usage and takes it out of the client's
stream unless the client asked for it)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import orjson

CHARS_PER_TOKEN = 4
"""A rough English average; the estimate only decides whether a prompt can fit the budget at all,
the engine's count is what is charged."""


def _text_size(value: Any) -> int:
    """Characters of text in a prompt field (strings, content parts, nested lists), a token id
    counting as CHARS_PER_TOKEN. Iterative: a body nested a thousand lists deep costs no stack.
    A message's string content is counted where it is met (the common shape, on every request)."""
    if isinstance(value, str):
        return len(value)
    size = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for part in (item.get("text"), item.get("content")):
                if isinstance(part, str):
                    size += len(part)
                elif part is not None:
                    pending.append(part)
        elif isinstance(item, str):
            size += len(item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            size += CHARS_PER_TOKEN
        elif isinstance(item, list):
            pending.extend(item)
    return size


_PROMPT_FIELDS = ("messages", "prompt", "input", "system")


def estimate_prompt_tokens(document: dict[str, Any]) -> int:
    """About how many tokens the prompt of a chat, completion, embedding or messages request has.
    Token-id lists count one per id."""
    size = 0
    for field in _PROMPT_FIELDS:
        value = document.get(field)
        if value is not None:
            size += _text_size(value)
    return max(1, math.ceil(size / CHARS_PER_TOKEN))


class Usage(NamedTuple):
    """Tokens an engine reported for one request."""

    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def usage_of(usage: Any) -> Usage | None:
    """The tokens of an OpenAI `usage` object (a total alone counts as prompt tokens)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion, total = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return Usage(total, 0) if isinstance(total, int) else None
    return Usage(prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


_USAGE_KEY = b'"usage"'
_TAIL_BYTES = 4096
"""How far from the end a `usage` member is looked for before the whole body is parsed."""
_SMALL_BODY = 2048
"""Bodies up to this size are parsed whole: orjson reads a chat answer of a few hundred bytes
faster than the byte operations that find its end (measured: 0.9 against 1.1 µs)."""


def _trailing_usage(content: bytes) -> tuple[bool, Any]:
    """(True, value) when `content` ends with a top-level `"usage": value` member, read from the
    end alone; (False, None) when it does not end that way (or its end does not parse).

    Engines write `usage` after `choices` or `data`, so this is one search near the end and a
    parse of a few dozen bytes instead of the whole answer (a large one for embeddings). Why it is
    the top-level member: in JSON text a quote inside a string is escaped, so an unescaped
    `"usage"` followed by `:` is a key; when its value is followed by nothing but the last `}`,
    the object it belongs to ends where the document does, and only the outermost object does
    that. The body is an engine's JSON encoder's output (the client's text reaches it only inside
    escaped strings), so the rest of it is not read again to check it is valid."""
    at = content.rfind(_USAGE_KEY)
    if at <= 0 or len(content) - at > _TAIL_BYTES or content[at - 1] == 0x5C:  # a backslash: a string's
        return False, None
    rest = content[at + len(_USAGE_KEY) :].lstrip()
    value = rest[1:].rstrip()
    if rest[:1] != b":" or value[-1:] != b"}" or content[: content.find(b"{") + 1].strip() != b"{":
        return False, None
    try:
        return True, orjson.loads(value[:-1])
    except orjson.JSONDecodeError:
        return False, None


def body_usage(content: bytes) -> Usage | None:
    """The usage of a complete JSON answer, or None. In a large answer (embeddings, long
    completions) it is looked for at the end first (see `_trailing_usage`); any other is parsed
    whole."""
    if len(content) > _SMALL_BODY:
        found, usage = _trailing_usage(content)
        if found:
            return usage_of(usage)
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return usage_of(parsed.get("usage")) if isinstance(parsed, dict) else None


_ASKING = b'{"stream_options":{"include_usage":true},'


def asking_for_usage(document: dict[str, Any], body: bytes) -> bytes | None:
    """The body of a streamed request with `stream_options.include_usage` set, or None when the
    request does not stream or already asks for usage. `document` is `body` parsed. Without
    stream_options (the usual request) the member is put before the body's first one, so a long
    prompt is not written out again; the object has members (at least `stream`), hence the comma."""
    if document.get("stream") is not True:
        return None
    options = document.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return None
    if "stream_options" not in document:
        start = body.find(b"{")
        if start >= 0 and not body[:start].strip():
            return _ASKING + body[start + 1 :]
    merged = dict(options) if isinstance(options, dict) else {}
    merged["include_usage"] = True
    return orjson.dumps({**document, "stream_options": merged})


_USAGE_OBJECTS = (b'"usage":{', b'"usage": {')
"""How a `usage` with a value to count begins, in compact and in spaced JSON. An engine asked for
usage sends `"usage": null` in every chunk before the one that counts (OpenAI's API and vLLM do):
those never match. In JSON text a quote inside a string is escaped, so an unescaped `"usage"`
followed by `:` is a key; a rare false match (a key ending in an escaped quote and `usage`) is
parsed and let through unchanged."""


def _next_usage(events: bytes, start: int) -> int:
    """Where the next `usage` with an object value begins in `events` at or after `start` (-1: none)."""
    compact = events.find(_USAGE_OBJECTS[0], start)
    spaced = events.find(_USAGE_OBJECTS[1], start)
    if compact < 0 or 0 <= spaced < compact:
        return spaced
    return compact


class UsageTap:
    """An OpenAI stream on its way to the client: notes the usage chunk's tokens and, when the
    client did not ask for usage, leaves that chunk out. Bytes pass through unchanged otherwise;
    only a partial event at the end of a chunk is held until its blank line arrives."""

    def __init__(self, *, strip: bool) -> None:
        self.strip = strip
        self.tokens: Usage | None = None
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        self._pending = data[end + 2 :]
        complete = data[: end + 2]
        at = _next_usage(complete, 0)
        if at < 0:
            return complete
        pieces: list[bytes] = []  # only the events with a usage are parsed; the others pass as bytes
        start = 0
        while at >= 0:
            begin = complete.rfind(b"\n\n", start, at)
            begin = begin + 2 if begin >= 0 else start
            finish = complete.index(b"\n\n", at) + 2
            pieces += (complete[start:begin], self._event(complete[begin:finish]))
            start = finish
            at = _next_usage(complete, start)
        pieces.append(complete[start:])
        return b"".join(pieces)

    def end(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    def _event(self, event: bytes) -> bytes:
        if event.startswith(b"data:") and event.count(b"\n") == 2:  # one data line: an engine's chunk
            data = event[5:].strip()
        else:
            data = b"".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event
        if not isinstance(payload, dict):
            return event
        tokens = usage_of(payload.get("usage"))
        if tokens is None:
            return event
        self.tokens = tokens
        return b"" if self.strip and not payload.get("choices") else event
