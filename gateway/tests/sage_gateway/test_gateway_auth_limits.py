"""Per-key limits as token buckets, with a clock the tests move: admission, 429s, headers."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from sage_gateway.auth.buckets import Bucket, duration
from sage_gateway.auth.keys import KeyPolicy
from sage_gateway.auth.limits import (
    KeyBuckets,
    Reading,
    Readings,
    admit,
    anthropic_headers,
    buckets_for,
    openai_headers,
    readings,
    settle,
)
from sage_wire.envelopes import Protocol, envelope
from sage_wire.errors import WireError


def refused(policy: KeyPolicy, buckets: KeyBuckets, tokens: int, now: float) -> WireError:
    with pytest.raises(WireError) as caught:
        admit(policy, buckets, tokens, now, openai_headers)
    return caught.value


def test_a_bucket_refills_at_its_capacity_per_minute() -> None:
    bucket = Bucket.full(60, now=0.0)
    bucket.take(0.0, 60)
    assert bucket.remaining(0.0) == 0
    assert bucket.wait(0.0, 1) == pytest.approx(1.0)
    assert bucket.remaining(30.0) == 30
    assert bucket.reset(30.0) == pytest.approx(30.0)
    assert bucket.remaining(500.0) == 60
    assert math.isinf(bucket.wait(500.0, 61))


def test_requests_per_minute_refuse_with_retry_after_and_headers() -> None:
    policy = KeyPolicy("ns/a", "d", requests_per_minute=2)
    buckets = buckets_for(policy, 0.0)
    admit(policy, buckets, 0, 0.0, openai_headers)
    seen = admit(policy, buckets, 0, 0.0, openai_headers)
    assert seen.requests is not None
    assert seen.requests.remaining == 0
    error = refused(policy, buckets, 0, 0.0)
    assert (error.status, error.limit_kind) == (429, "requests")
    assert error.headers["Retry-After"] == "30"
    assert error.headers["x-ratelimit-limit-requests"] == "2"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert envelope(error)["error"]["type"] == "requests"
    admit(policy, buckets, 0, 30.0, openai_headers)  # one request refilled after 30 s


def test_tokens_are_reserved_then_settled_from_usage() -> None:
    policy = KeyPolicy("ns/a", "d", tokens_per_minute=100)
    buckets = buckets_for(policy, 0.0)
    admit(policy, buckets, 10, 0.0, openai_headers)
    settle(buckets, reserved_tokens=10, used_tokens=90, now=0.0)  # the engine said 90 in all
    assert buckets.tokens is not None
    assert buckets.tokens.remaining(0.0) == 10
    error = refused(policy, buckets, 20, 0.0)
    assert error.limit_kind == "tokens"
    assert "about 20 requested" in error.message
    assert error.headers["x-ratelimit-remaining-tokens"] == "10"
    too_large = refused(policy, buckets, 500, 0.0)
    assert "more than the limit" in too_large.message
    assert "Retry-After" not in too_large.headers
    settle(buckets, reserved_tokens=5, used_tokens=None, now=0.0)  # no usage: the estimate stands
    assert buckets.tokens.remaining(0.0) == 10


def test_concurrent_requests_are_bounded_until_one_ends() -> None:
    policy = KeyPolicy("ns/a", "d", max_concurrent=1)
    buckets = buckets_for(policy, 0.0)
    admit(policy, buckets, 0, 0.0, openai_headers)
    assert "at once" in refused(policy, buckets, 0, 0.0).message
    settle(buckets, 0, None, 0.0)
    admit(policy, buckets, 0, 0.0, openai_headers)


def test_headers_in_each_protocol() -> None:
    seen = Readings(requests=Reading(60, 59, 1.0), tokens=Reading(1000, 400, 36.0))
    assert openai_headers(seen) == [
        (b"x-ratelimit-limit-requests", b"60"),
        (b"x-ratelimit-remaining-requests", b"59"),
        (b"x-ratelimit-reset-requests", b"1s"),
        (b"x-ratelimit-limit-tokens", b"1000"),
        (b"x-ratelimit-remaining-tokens", b"400"),
        (b"x-ratelimit-reset-tokens", b"36s"),
    ]
    assert openai_headers(Readings(tokens=Reading(1000, 400, 0.25))) == [
        (b"x-ratelimit-limit-tokens", b"1000"),
        (b"x-ratelimit-remaining-tokens", b"400"),
        (b"x-ratelimit-reset-tokens", b"250ms"),
    ]
    wall = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    told = dict(anthropic_headers(seen, wall))
    assert told[b"anthropic-ratelimit-tokens-reset"] == b"2026-12-02T12:00:36Z"
    assert told[b"anthropic-ratelimit-requests-remaining"] == b"59"
    assert len(told) == 6
    assert Protocol.ANTHROPIC  # both shapes exist


def test_reset_headers_say_what_duration_says() -> None:
    for seconds in (0.0, 0.0004, 0.0125, 0.5, 0.9994, 0.9996, 1.0, 59.5, 61.0, 360.0):
        told = dict(openai_headers(Readings(requests=Reading(60, 1, seconds))))
        assert told[b"x-ratelimit-reset-requests"] == duration(seconds).encode(), seconds


def test_remaining_is_the_level_rounded_down_and_never_below_zero() -> None:
    policy = KeyPolicy("ns/a", "d", tokens_per_minute=60)
    buckets = buckets_for(policy, 0.0)
    seen = admit(policy, buckets, 10, 0.0, openai_headers)
    assert seen.tokens == Reading(60, 50, 10.0)
    settle(buckets, 10, 210, 0.0)  # the engine counted 200 more than the estimate: 150 in debt
    assert readings(buckets, 0.0).tokens == Reading(60, 0, 210.0)
    assert readings(buckets, 150.5).tokens == Reading(60, 0, 59.5)  # refilled to 0.5
    assert readings(buckets, 152.75).tokens == Reading(60, 2, 57.25)
    assert readings(buckets, 1000.0).tokens == Reading(60, 60, 0.0)  # never above the capacity


def test_durations_read_like_openais() -> None:
    assert [duration(s) for s in (0.02, 1, 1.5, 360)] == ["20ms", "1s", "1.5s", "6m0s"]


def test_a_replaced_key_keeps_its_buckets_unless_its_limits_changed() -> None:
    from dataclasses import replace  # noqa: PLC0415

    from sage_gateway.auth.limiter import LocalLimiter  # noqa: PLC0415

    limiter = LocalLimiter(clock=lambda: 0.0)
    first = KeyPolicy("ns/a", "d", requests_per_minute=10, max_concurrent=5)
    assert limiter.admit_now(first, 0, openai_headers).readings.requests == Reading(10, 9, 6.0)
    assert limiter.admit_now(first, 0, openai_headers).readings.requests == Reading(10, 8, 12.0)
    renamed_models = replace(first, models=frozenset({"m"}))  # a new policy object, the same limits
    assert limiter.admit_now(renamed_models, 0, openai_headers).readings.requests == Reading(10, 7, 18.0)
    raised = replace(first, requests_per_minute=20, max_concurrent=4)  # new limits: full buckets
    assert limiter.admit_now(raised, 0, openai_headers).readings.requests == Reading(20, 19, 3.0)
    with pytest.raises(WireError, match="4 requests are open"):  # but the requests still open count
        limiter.admit_now(raised, 0, openai_headers)
