"""Admission under a key's limits, and how limits are told to clients (pure).

`admit` decides from a key's buckets and open requests whether one more request may start,
reserving one request and the prompt's estimated tokens; `settle` replaces the estimate with the
tokens the engine reported. The answers follow the official APIs: a 429 names the limit in its
type (`requests` or `tokens`) with Retry-After, and every response of a limited key carries
`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (OpenAI) or `anthropic-ratelimit-*`
(Anthropic, resets as RFC 3339 times).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from sage_gateway.auth.buckets import Bucket, duration
from sage_gateway.auth.keys import KeyPolicy
from sage_wire.errors import WireError
from sage_wire.media import RawHeaders


class Reading(NamedTuple):
    """One limit as the client is told it (tuples: made on every request of a limited key)."""

    limit: int
    remaining: int
    reset: float
    """Seconds until the limit is whole again."""


class Readings(NamedTuple):
    requests: Reading | None = None
    tokens: Reading | None = None


@dataclass(slots=True)
class KeyBuckets:
    """One key's state on one gateway (or as loaded from the shared store)."""

    requests: Bucket | None
    tokens: Bucket | None
    open: int = 0


def buckets_for(policy: KeyPolicy, now: float) -> KeyBuckets:
    requests = Bucket.full(policy.requests_per_minute, now) if policy.requests_per_minute else None
    tokens = Bucket.full(policy.tokens_per_minute, now) if policy.tokens_per_minute else None
    return KeyBuckets(requests, tokens)


def _read(bucket: Bucket) -> Reading:
    """A bucket already brought up to date, as the client is told it (its level rounded down,
    never below 0)."""
    level = bucket.level
    return Reading(bucket.capacity, int(level) if level > 0 else 0, (bucket.top - level) / bucket.rate)


def _reading(bucket: Bucket | None, now: float) -> Reading | None:
    if bucket is None:
        return None
    bucket.refill(now)
    return _read(bucket)


def readings(buckets: KeyBuckets, now: float) -> Readings:
    return Readings(_reading(buckets.requests, now), _reading(buckets.tokens, now))


Tell = Callable[[Readings], RawHeaders]
"""How readings become response headers (per protocol), as the bytes they go out as: an admitted
request's answer carries them as they are; a 429's decodes them."""


def rate_limited(policy: KeyPolicy, kind: str, message: str, wait: float | None, headers: dict[str, str]) -> WireError:
    if wait is not None and math.isfinite(wait):
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
    text = f"Rate limit reached for API key '{policy.name}': {message}"
    return WireError(429, text, "rate_limit_exceeded", headers=headers, limit_kind=kind)


class Verdict(StrEnum):
    """What admission decides; a shared store computes the same (see `shared`)."""

    OK = "ok"
    OPEN = "open"
    """Too many requests of the key are open."""
    REQUESTS = "requests"
    TOO_LARGE = "too_large"
    """The prompt alone is more than the whole minute's tokens."""
    TOKENS = "tokens"


def verdict(policy: KeyPolicy, buckets: KeyBuckets, prompt_tokens: int, now: float) -> Verdict:
    """`Bucket.wait`'s answers, read from the refilled levels: an amount must wait exactly when it
    is more than the level, and never fits when it is more than the capacity."""
    if policy.max_concurrent is not None and buckets.open >= policy.max_concurrent:
        return Verdict.OPEN
    requests, tokens = buckets.requests, buckets.tokens
    if requests is not None:
        requests.refill(now)
        if requests.level < 1:
            return Verdict.REQUESTS
    if tokens is not None:
        tokens.refill(now)
        if prompt_tokens > tokens.capacity:
            return Verdict.TOO_LARGE
        if prompt_tokens > tokens.level:
            return Verdict.TOKENS
    return Verdict.OK


def refusal(
    found: Verdict, policy: KeyPolicy, buckets: KeyBuckets, prompt_tokens: int, now: float, *, tell: Tell
) -> WireError:
    """The 429 of a refused admission (`found` is not OK)."""
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in tell(readings(buckets, now))}
    if found is Verdict.OPEN:
        message = f"{buckets.open} requests are open, the limit is {policy.max_concurrent} at once."
        return rate_limited(policy, "requests", message, 1.0, headers)
    if found is Verdict.REQUESTS and buckets.requests is not None:
        wait = buckets.requests.wait(now, 1)
        message = f"limit {buckets.requests.capacity} requests per minute. Try again in {duration(wait)}."
        return rate_limited(policy, "requests", message, wait, headers)
    tokens = buckets.tokens
    assert tokens is not None
    if found is Verdict.TOO_LARGE:
        message = (
            f"the prompt alone is about {prompt_tokens} tokens, more than the limit of "
            f"{tokens.capacity} tokens per minute."
        )
        return rate_limited(policy, "tokens", message, None, headers)
    wait = tokens.wait(now, prompt_tokens)
    message = (
        f"limit {tokens.capacity} tokens per minute, {tokens.remaining(now)} left, "
        f"about {prompt_tokens} requested. Try again in {duration(wait)}."
    )
    return rate_limited(policy, "tokens", message, wait, headers)


def _take(bucket: Bucket, amount: int) -> Reading:
    """Take `amount` from a bucket already brought up to date (`Bucket.take` without the refill),
    and read it."""
    level = bucket.level - amount
    bucket.level = level if level < bucket.top else bucket.top
    return _read(bucket)


def admit(policy: KeyPolicy, buckets: KeyBuckets, prompt_tokens: int, now: float, tell: Tell) -> Readings:
    """Start one request of `policy` (estimated `prompt_tokens`), or raise its 429 (its limit
    headers written by `tell`). An admitted request takes one request, its prompt's estimated
    tokens and one open slot."""
    found = verdict(policy, buckets, prompt_tokens, now)  # brings both buckets up to `now`
    if found is not Verdict.OK:
        raise refusal(found, policy, buckets, prompt_tokens, now, tell=tell)
    requests, tokens = buckets.requests, buckets.tokens
    buckets.open += 1
    return Readings(
        _take(requests, 1) if requests is not None else None,
        _take(tokens, prompt_tokens) if tokens is not None else None,
    )


def settle(buckets: KeyBuckets, reserved_tokens: int, used_tokens: int | None, now: float) -> None:
    """One request of the key ended: it is no longer open, and its tokens are what the engine
    reported (the estimate stands when it reported none)."""
    buckets.open = max(0, buckets.open - 1)
    if buckets.tokens is not None and used_tokens is not None:
        buckets.tokens.take(now, used_tokens - reserved_tokens)


def _names(*patterns: str) -> tuple[tuple[bytes, ...], ...]:
    """Per kind of limit (requests, tokens): the header names, encoded once."""
    return tuple(tuple(pattern.format(kind).encode() for pattern in patterns) for kind in Readings._fields)


_OPENAI_REQUESTS, _OPENAI_TOKENS = _names("x-ratelimit-limit-{}", "x-ratelimit-remaining-{}", "x-ratelimit-reset-{}")
_ANTHROPIC_NAMES = _names(
    "anthropic-ratelimit-{}-limit", "anthropic-ratelimit-{}-remaining", "anthropic-ratelimit-{}-reset"
)
LIMIT_HEADER_NAMES = frozenset(
    name for names in (_OPENAI_REQUESTS, _OPENAI_TOKENS, *_ANTHROPIC_NAMES) for name in names
)
"""Every limit header the gateway writes: a limited key's answer carries the gateway's, never an
engine's."""


def _reset_value(seconds: float) -> bytes:
    """`duration` as the header's bytes; under a second (the common case: a key with room left
    refills in milliseconds) formatted at once."""
    return b"%.0fms" % (seconds * 1000) if 0 <= seconds < 1 else duration(seconds).encode()


def _openai_told(names: tuple[bytes, ...], reading: Reading) -> RawHeaders:
    limit, remaining, reset = names
    return [
        (limit, b"%d" % reading.limit),
        (remaining, b"%d" % reading.remaining),
        (reset, _reset_value(reading.reset)),
    ]


def openai_headers(seen: Readings) -> RawHeaders:
    requests, tokens = seen
    if requests is None:
        return _openai_told(_OPENAI_TOKENS, tokens) if tokens is not None else []
    told = _openai_told(_OPENAI_REQUESTS, requests)
    return told + _openai_told(_OPENAI_TOKENS, tokens) if tokens is not None else told


def anthropic_headers(seen: Readings, wall_now: datetime) -> RawHeaders:
    headers: RawHeaders = []
    for (limit, remaining, reset), reading in zip(_ANTHROPIC_NAMES, seen, strict=True):
        if reading is not None:
            at = (wall_now + timedelta(seconds=math.ceil(reading.reset))).replace(microsecond=0)
            headers += (
                (limit, b"%d" % reading.limit),
                (remaining, b"%d" % reading.remaining),
                (reset, at.isoformat().replace("+00:00", "Z").encode()),
            )
    return headers
