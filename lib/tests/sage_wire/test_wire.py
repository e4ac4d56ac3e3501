"""The shared wire format: error types as the official APIs send them, both envelopes, SSE."""

from __future__ import annotations

import orjson
import pytest

from sage_wire.envelopes import Protocol, envelope, error_body, error_of, refused_before_start
from sage_wire.errors import WireError, body_too_large, not_ready
from sage_wire.sse import DONE, SSEDecoder, data_event, data_payloads, named_event


@pytest.mark.parametrize(
    ("status", "openai", "anthropic"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "invalid_request_error", "authentication_error"),
        (403, "invalid_request_error", "permission_error"),
        (404, "invalid_request_error", "not_found_error"),
        (413, "invalid_request_error", "request_too_large"),
        (429, "requests", "rate_limit_error"),
        (500, "server_error", "api_error"),
        (502, "server_error", "api_error"),
        (503, "server_error", "overloaded_error"),
    ],
)
def test_types_follow_the_status_in_each_protocol(status: int, openai: str, anthropic: str) -> None:
    error = WireError(status, "m", "c", "p")
    assert envelope(error) == {"error": {"message": "m", "type": openai, "param": "p", "code": "c"}}
    assert envelope(error, Protocol.ANTHROPIC) == {"type": "error", "error": {"type": anthropic, "message": "m"}}


def test_a_token_limit_names_its_kind() -> None:
    assert (
        envelope(WireError(429, "slow down", "rate_limit_exceeded", limit_kind="tokens"))["error"]["type"] == "tokens"
    )


def test_constructors_carry_code_and_headers() -> None:
    assert (body_too_large(10).status, body_too_large(10).code) == (413, "request_too_large")
    waiting = not_ready("loading", "model_loading", retry_after=3)
    assert (waiting.status, waiting.headers) == (503, {"Retry-After": "3"})


def test_envelopes_are_recognised_in_bytes() -> None:
    body = error_body(WireError(400, "bad", "x"))
    assert error_of(body) == {"message": "bad", "type": "invalid_request_error", "param": None, "code": "x"}
    assert error_of(b"plain text") is None
    assert error_of(orjson.dumps({"data": []})) is None


def test_sse_framing_round_trip() -> None:
    body = data_event({"a": 1}) + named_event("ping", {"b": "x y"}) + DONE
    assert body.endswith(b"data: [DONE]\n\n")
    assert data_payloads(body) == [b'{"a":1}', b'{"b":"x y"}', b"[DONE]"]


def test_decoder_joins_events_split_across_chunks() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a"') == []
    assert decoder.feed(b":1}\r\n\r\ndata: x\n") == [b'{"a":1}']
    assert decoder.flush() == [b"x"]


def test_only_an_engines_refusal_before_any_work_may_go_elsewhere() -> None:
    def answer(status: int, code: str) -> tuple[int, bytes]:
        return status, error_body(WireError(status, "m", code), Protocol.OPENAI)

    assert refused_before_start(*answer(503, "engine_overloaded"))
    assert refused_before_start(*answer(503, "model_loading"))
    assert not refused_before_start(*answer(503, "shutting_down"))  # it ran, and outlived the drain
    assert not refused_before_start(*answer(500, "model_loading"))
    assert not refused_before_start(503, b"Service Unavailable")  # a proxy's page: who knows
