"""Tokens a request costs: the prompt estimate, usage from answers and from streams."""

from __future__ import annotations

import orjson

from sage_gateway.auth.usage import (
    Usage,
    UsageTap,
    _trailing_usage,
    asking_for_usage,
    body_usage,
    estimate_prompt_tokens,
)
from sage_wire.sse import data_event


def test_prompt_estimates_count_text_in_every_request_shape() -> None:
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": "x" * 400}]}) == 100
    parts = [{"type": "text", "text": "y" * 40}]
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": parts}], "system": "z" * 40}) == 20
    assert estimate_prompt_tokens({"prompt": [1, 2, 3]}) == 3
    assert estimate_prompt_tokens({"input": ["a" * 8, "b" * 8]}) == 4
    assert estimate_prompt_tokens({}) == 1


def test_prompt_estimates_take_any_json_without_failing() -> None:
    deep: list[object] = ["abcd"]
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    assert estimate_prompt_tokens({"prompt": deep}) == 1
    odd = [{"role": "user", "content": [{"text": 7}, {"text": None}, "x" * 8, [True, 2.5]]}]
    assert estimate_prompt_tokens({"messages": odd}) == 3  # the id 7 and 8 characters


def test_usage_of_a_complete_answer() -> None:
    assert body_usage(b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}') == Usage(3, 4)
    assert body_usage(b'{"usage": {"prompt_tokens": 5}}') == Usage(5, 0)
    assert body_usage(b'{"usage": {"total_tokens": 9}}') == Usage(9, 0)
    assert body_usage(b'{"usage": {"prompt_tokens": "3"}}') is None
    assert body_usage(b"not json") is None
    assert body_usage(b"[]") is None


def test_usage_is_the_top_level_member_wherever_the_answer_names_usage() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "details": {"cached": 1}}
    said = '"usage": {"prompt_tokens": 99} and \\"usage\\" in a string'
    last = {"choices": [{"message": {"content": said, "usage": {"prompt_tokens": 98}}}], "usage": usage}
    assert body_usage(orjson.dumps(last)) == Usage(3, 4)
    assert _trailing_usage(orjson.dumps(last)) == (True, usage)  # read from the end alone
    assert body_usage(orjson.dumps(last, option=orjson.OPT_INDENT_2) + b"\n") == Usage(3, 4)
    first = {"usage": usage, "choices": [{"message": {"content": said, "usage": {"prompt_tokens": 98}}}]}
    assert body_usage(orjson.dumps(first)) == Usage(3, 4)
    assert _trailing_usage(orjson.dumps(first)) == (False, None)  # parsed whole
    nested_last = {"usage": usage, "choices": [{"usage": {"prompt_tokens": 98}}]}
    assert body_usage(orjson.dumps(nested_last)) == Usage(3, 4)
    assert body_usage(orjson.dumps({"choices": [{"usage": {"prompt_tokens": 98}}]})) is None
    assert body_usage(orjson.dumps({'x"usage': {"prompt_tokens": 98}})) is None  # a key that only ends so
    assert body_usage(orjson.dumps({"data": [0.5] * 5000, "usage": usage})) == Usage(3, 4)
    assert body_usage(orjson.dumps({"choices": [], "usage": None})) is None


def asked(body: bytes) -> bytes | None:
    return asking_for_usage(orjson.loads(body), body)


def test_a_stream_is_asked_for_usage_only_when_it_does_not_ask() -> None:
    merged = asked(b'{"model": "m", "stream": true, "stream_options": {"other": 1}}')
    assert merged is not None
    assert orjson.loads(merged)["stream_options"] == {"other": 1, "include_usage": True}
    assert asked(b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}') is None
    assert asked(b'{"model": "m"}') is None
    assert asked(b'{"model": "m", "stream": false}') is None


def test_a_stream_without_options_gets_them_before_its_untouched_body() -> None:
    prompt = "long " * 10_000
    for body in (
        orjson.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}], "stream": True}),
        b' \n {"stream": true, "model": "m"}\n',
        b'{"stream":true}',
    ):
        spliced = asked(body)
        assert spliced is not None
        assert orjson.loads(spliced) == {"stream_options": {"include_usage": True}, **orjson.loads(body)}
        assert spliced.endswith(body[body.index(b"{") + 1 :])  # the rest of the body as it came
    with_null = asked(b'{"model": "m", "stream": true, "stream_options": null}')
    assert with_null is not None
    assert orjson.loads(with_null)["stream_options"] == {"include_usage": True}


STREAM = (
    data_event({"choices": [{"delta": {"content": "hi"}}]})
    + data_event({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    + data_event({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}})
    + b"data: [DONE]\n\n"
)


def fed(tap: UsageTap, pieces: list[bytes]) -> bytes:
    return b"".join(tap.feed(piece) for piece in pieces) + tap.end()


def test_the_tap_counts_and_strips_the_usage_chunk_wherever_chunks_split() -> None:
    for size in (1, 7, 64, len(STREAM)):
        pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
        stripped = UsageTap(strip=True)
        out = fed(stripped, pieces)
        assert stripped.tokens == Usage(2, 1)
        assert b"usage" not in out
        assert out.endswith(b"data: [DONE]\n\n")
        assert out.count(b"data:") == 3
        kept = UsageTap(strip=False)
        assert fed(kept, pieces) == STREAM
        assert kept.tokens == Usage(2, 1)


def test_the_tap_lets_null_usage_chunks_through_and_counts_the_last() -> None:
    chunk = {"choices": [{"delta": {"content": '"usage": {"prompt_tokens": 9}'}}], "usage": None}
    spaced = b'data: {"choices": [{"delta": {"content": "x"}}], "usage": null}\n\n'
    counted = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}}
    stream = data_event(chunk) + spaced + data_event(counted) + b"data: [DONE]\n\n"
    for size in (1, 13, len(stream)):
        pieces = [stream[i : i + size] for i in range(0, len(stream), size)]
        kept = UsageTap(strip=False)
        assert fed(kept, pieces) == stream
        assert kept.tokens == Usage(4, 5)
        stripped = UsageTap(strip=True)
        assert fed(stripped, pieces) == data_event(chunk) + spaced + b"data: [DONE]\n\n"
        assert stripped.tokens == Usage(4, 5)
    value_named_usage = data_event({"choices": [], "kind": "usage", "usage": None})
    tap = UsageTap(strip=True)
    assert fed(tap, [value_named_usage]) == value_named_usage
    assert tap.tokens is None


def test_the_tap_parses_only_events_with_a_usage_and_keeps_the_rest_in_order() -> None:
    word = data_event({"choices": [{"delta": {"content": "w"}}], "usage": None})
    first = data_event({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    spaced = b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n'
    stream = word + first + word + spaced + b": a comment\n\n" + b"data: [DONE]\n\n"
    kept = UsageTap(strip=False)
    assert fed(kept, [stream]) == stream
    assert kept.tokens == Usage(3, 4)  # the last one counts
    stripped = UsageTap(strip=True)
    assert fed(stripped, [stream]) == word + word + b": a comment\n\n" + b"data: [DONE]\n\n"
    assert stripped.tokens == Usage(3, 4)
