"""The gateway's errors, and what a relay makes of upstream answers in each protocol (pure)."""

from __future__ import annotations

import orjson

from sage_gateway.errors import model_not_found, no_ready_replica, upstream_error
from sage_gateway.relay import OPENAI_PASSTHROUGH, AnthropicMessages
from sage_wire.errors import WireError
from sage_wire.sse import data_payloads


def test_not_found_names_the_models_and_not_ready_says_when_to_retry() -> None:
    assert "a, b" in model_not_found("x", ["a", "b"]).message
    assert "none" in model_not_found("x", []).message
    error = no_ready_replica("x", 9)
    assert (error.status, error.headers, error.code) == (503, {"Retry-After": "9"}, "model_not_ready")


def test_not_found_lists_twenty_names_and_counts_the_rest() -> None:
    message = model_not_found("x", [f"e{index:04d}" for index in range(1000)]).message
    assert "e0019" in message
    assert "e0020" not in message
    assert "and 980 more (GET /v1/models lists them)" in message


def test_an_upstream_envelope_keeps_its_fields() -> None:
    body = orjson.dumps(
        {"error": {"message": "too long", "type": "invalid_request_error", "code": "ctx", "param": "p"}}
    )
    error = upstream_error(400, body, "http://r:1")
    assert (error.status, error.message, error.code, error.param) == (400, "too long", "ctx", "p")


def test_a_plain_upstream_failure_becomes_502_quoting_it() -> None:
    error = upstream_error(500, b"Internal Server Error", "http://r:1")
    assert error.status == 502
    assert "http://r:1 answered 500: Internal Server Error" in error.message
    assert upstream_error(429, b"", "http://r:1").status == 429


def test_openai_routes_pass_an_engines_envelope_through_and_wrap_plain_text() -> None:
    envelope = orjson.dumps({"error": {"message": "bad field", "type": "invalid_request_error"}})
    assert OPENAI_PASSTHROUGH.error(400, envelope, "http://r:1", encoded=False) is None
    wrapped = OPENAI_PASSTHROUGH.error(500, b"boom", "http://r:1", encoded=False)
    assert wrapped is not None
    assert wrapped.status == 502


def test_a_broken_openai_stream_ends_with_an_error_event() -> None:
    stream = OPENAI_PASSTHROUGH.stream()
    assert stream.feed(b"data: {}\n\n") == b"data: {}\n\n"
    tail = stream.fail(WireError(502, "gone", "upstream_error"))
    assert orjson.loads(data_payloads(tail)[0])["error"]["code"] == "upstream_error"
    assert stream.failed_status == 502


def test_an_upstream_error_inside_an_anthropic_stream_becomes_its_error_event() -> None:
    stream = AnthropicMessages("echo", "msg_1").stream()
    chunk = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\ndata: {"error": {"message": "oom"}}\n\n'
    out = stream.feed(chunk)
    assert b"event: content_block_delta" in out
    assert b"event: error" in out
    error = orjson.loads(data_payloads(out)[-1])
    assert error == {"type": "error", "error": {"type": "api_error", "message": "oom"}}
    assert stream.failed_status == 502
    assert stream.end() == b""  # nothing follows the error event
