"""Error envelopes: one shape for every error, upstream failures included."""

from __future__ import annotations

import orjson

from sage_gateway.errors import GatewayError, error_envelope, model_not_found, no_ready_replica, upstream_error


def test_envelope_has_the_four_fields_and_the_anthropic_marker_when_asked() -> None:
    assert error_envelope(404, "m", "model_not_found", "model") == {
        "error": {"message": "m", "type": "not_found_error", "param": "model", "code": "model_not_found"}
    }
    assert error_envelope(400, "m", "c", anthropic=True)["type"] == "error"


def test_not_found_names_the_models_and_not_ready_says_when_to_retry() -> None:
    assert "a, b" in model_not_found("x", ["a", "b"]).message
    assert "none" in model_not_found("x", []).message
    error = no_ready_replica("x", 9)
    assert (error.status, error.headers) == (503, {"Retry-After": "9"})


def test_an_upstream_envelope_keeps_its_fields() -> None:
    body = orjson.dumps(
        {"error": {"message": "too long", "type": "invalid_request_error", "code": "ctx", "param": "p"}}
    )
    error = upstream_error(400, body, "http://r:1")
    assert (error.status, error.message, error.code, error.param) == (400, "too long", "ctx", "p")


def test_a_plain_upstream_failure_becomes_502_quoting_it() -> None:
    error = upstream_error(500, b"Internal Server Error", "http://r:1")
    assert isinstance(error, GatewayError)
    assert error.status == 502
    assert "http://r:1 answered 500: Internal Server Error" in error.message
    assert upstream_error(429, b"", "http://r:1").status == 429
