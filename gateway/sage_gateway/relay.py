"""How an upstream answer reaches the client in the protocol the client speaks (pure).

The proxy forwards every request the same way; a `Relay` decides what the client sees: the body
of a success, the error a failed answer becomes, and, chunk by chunk, what a stream turns into
(including the error event that ends a stream an upstream broke off). OpenAI routes pass bytes
through untouched; the Anthropic Messages route translates chat completions back into messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol as Interface

import orjson

from sage_gateway.anthropic import Event, MessageStreamTranslator, chat_to_message, encode_events
from sage_gateway.auth.usage import Usage, UsageTap
from sage_gateway.errors import upstream_error
from sage_gateway.headers import request_id_header, response_headers
from sage_wire.envelopes import Protocol, envelope, error_in, error_of
from sage_wire.errors import WireError
from sage_wire.media import EVENT_STREAM, JSON, RawHeaders
from sage_wire.sse import DONE_DATA, SSEDecoder, data_event

MID_STREAM_FAILURE = 502
"""The status a stream that ended in an error event is counted under (its status line said 200)."""


class StreamShaper(Interface):
    """One stream's chunks on their way to the client."""

    failed_status: int | None
    """Set once the stream carried an error (from the upstream, or `fail`)."""

    @property
    def tokens(self) -> Usage | None:
        """Tokens the stream's usage reported (None: not counted, or none seen)."""
        ...

    def feed(self, chunk: bytes) -> bytes: ...

    def end(self) -> bytes:
        """What follows the upstream's last chunk."""
        ...

    def fail(self, error: WireError) -> bytes:
        """The error event that ends a stream the upstream broke off."""
        ...


class Relay(Interface):
    protocol: Protocol

    def headers(self, upstream: Iterable[tuple[bytes, bytes]], request_id: str, *, streaming: bool) -> RawHeaders:
        """The client's headers, from the upstream's (names lower-case, as bytes)."""
        ...

    def body(self, content: bytes) -> bytes:
        """The client's body for a successful, complete upstream answer."""
        ...

    def error(self, status: int, content: bytes, replica: str, *, encoded: bool) -> WireError | None:
        """The error an upstream error answer becomes; None passes the upstream's bytes through."""
        ...

    def stream(self, *, count_usage: bool = False, strip_usage: bool = False) -> StreamShaper:
        """A shaper for one stream; `count_usage` notes its usage, `strip_usage` leaves the usage
        chunk the gateway asked for out of what the client gets."""
        ...


def cut_off() -> WireError:
    return WireError(
        MID_STREAM_FAILURE, "The replica ended the stream before the answer was complete.", "upstream_error"
    )


@dataclass
class _PassthroughStream:
    tap: UsageTap | None = None
    failed_status: int | None = None
    _tail: bytes = b""
    """The last bytes seen: a whole stream ends with `data: [DONE]`."""
    _error_seen: bool = False

    @property
    def tokens(self) -> Usage | None:
        return self.tap.tokens if self.tap is not None else None

    def feed(self, chunk: bytes) -> bytes:
        self._tail = (self._tail + chunk[-32:])[-32:]  # never a copy of the whole chunk
        if not self._error_seen and b'"error"' in chunk:
            self._error_seen = True  # the replica ended it with an error event of its own
        return self.tap.feed(chunk) if self.tap is not None else chunk

    def end(self) -> bytes:
        rest = self.tap.end() if self.tap is not None else b""
        if self._error_seen or self._tail.rstrip().endswith(DONE_DATA):
            return rest
        return rest + self.fail(cut_off())  # no [DONE]: never a silently truncated answer

    def fail(self, error: WireError) -> bytes:
        self.failed_status = error.status
        return data_event(envelope(error))


class OpenAIPassthrough:
    """The replica speaks OpenAI, so does the client: bytes pass untouched, compressed or not."""

    protocol = Protocol.OPENAI

    def headers(self, upstream: Iterable[tuple[bytes, bytes]], request_id: str, *, streaming: bool) -> RawHeaders:
        return response_headers(upstream, request_id)

    def body(self, content: bytes) -> bytes:
        return content

    def error(self, status: int, content: bytes, replica: str, *, encoded: bool) -> WireError | None:
        # An engine's own envelope passes as it is; a crashed server (or a proxy in between) may
        # answer in plain text, which is wrapped in one.
        if encoded or error_of(content) is not None:
            return None
        return upstream_error(status, content, replica)

    def stream(self, *, count_usage: bool = False, strip_usage: bool = False) -> StreamShaper:
        return _PassthroughStream(UsageTap(strip=strip_usage) if count_usage else None)


@dataclass
class _MessagesStream:
    translator: MessageStreamTranslator
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    failed_status: int | None = None
    _ended: bool = False
    _done: bool = False
    """[DONE] came: the upstream finished its stream (with or without a finish_reason)."""

    @property
    def tokens(self) -> Usage | None:
        return self.translator.usage

    def feed(self, chunk: bytes) -> bytes:
        if self._ended:
            return b""
        events: list[Event] = []
        for data in self.decoder.feed(chunk):
            if data == DONE_DATA:
                self._done = True
                continue
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                failure = WireError(MID_STREAM_FAILURE, "The upstream stream is not JSON.", "upstream_error")
                return encode_events(events) + self.fail(failure)
            if (problem := error_in(payload)) is not None and "choices" not in payload:
                failure = WireError(MID_STREAM_FAILURE, str(problem["message"]), "upstream_error")
                return encode_events(events) + self.fail(failure)
            events += self.translator.feed(payload)
        return encode_events(events)

    def end(self) -> bytes:
        if self._ended:
            return b""
        if not (self._done or self.translator.finished):
            return self.fail(cut_off())  # neither [DONE] nor a finish_reason: cut off, say so
        self._ended = True
        return encode_events(self.translator.finish())

    def fail(self, error: WireError) -> bytes:
        self._ended = True
        self.failed_status = error.status
        return encode_events(self.translator.error(envelope(error, Protocol.ANTHROPIC)))


_STREAM_HEADERS = [(b"content-type", EVENT_STREAM.encode()), (b"cache-control", b"no-cache")]
_JSON_HEADERS = [(b"content-type", JSON.encode())]


@dataclass
class AnthropicMessages:
    """The client speaks the Messages API to a replica that answers chat completions."""

    model: str
    message_id: str
    protocol = Protocol.ANTHROPIC

    def headers(self, upstream: Iterable[tuple[bytes, bytes]], request_id: str, *, streaming: bool) -> RawHeaders:
        own = [request_id_header(request_id)]
        return own + (_STREAM_HEADERS if streaming else _JSON_HEADERS)

    def body(self, content: bytes) -> bytes:
        try:
            chat = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise WireError(502, "The upstream answered with a body that is not JSON.", "upstream_error") from None
        return orjson.dumps(chat_to_message(chat, self.model))

    def error(self, status: int, content: bytes, replica: str, *, encoded: bool) -> WireError | None:
        return upstream_error(status, content, replica)

    def stream(self, *, count_usage: bool = False, strip_usage: bool = False) -> StreamShaper:
        # The translation always asks for usage (message_delta carries it) and never relays it raw.
        return _MessagesStream(MessageStreamTranslator(self.model, self.message_id))


OPENAI_PASSTHROUGH = OpenAIPassthrough()
