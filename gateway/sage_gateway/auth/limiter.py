"""Limiters: where a key's buckets live. `LocalLimiter` keeps them in this process (one gateway
replica, or the fallback when the shared store is unreachable); `shared.RedisLimiter` keeps them in
Redis for every replica at once. Both decide with the rules of `limits`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sage_gateway.auth.keys import KeyPolicy
from sage_gateway.auth.limits import KeyBuckets, Readings, Tell, admit, buckets_for, settle

Settle = Callable[[int | None], None]
"""Called once when an admitted request ends, with the tokens the engine reported (None: unknown)."""


def _nothing(tokens: int | None) -> None:
    return None


class Admission(NamedTuple):
    readings: Readings
    settle: Settle


UNLIMITED = Admission(Readings(), _nothing)


class Limiter(Protocol):
    async def acquire(self, policy: KeyPolicy, prompt_tokens: int, tell: Tell) -> Admission:
        """Admit one request of `policy` or raise its 429."""
        ...

    def forget(self, name: str) -> None:
        """The key is gone: drop what is kept for it."""
        ...


def _limits_of(policy: KeyPolicy) -> tuple[int | None, int | None]:
    return policy.requests_per_minute, policy.tokens_per_minute


@dataclass
class LocalLimiter:
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[KeyPolicy, KeyBuckets]] = field(default_factory=dict)
    """Per key name: the policy the buckets were last used with, and the buckets."""

    def _buckets_of(self, policy: KeyPolicy) -> KeyBuckets:
        known = self._buckets.get(policy.name)
        if known is not None and known[0] is policy:
            return known[1]
        if known is not None and _limits_of(known[0]) == _limits_of(policy):
            self._buckets[policy.name] = (policy, known[1])
            return known[1]
        fresh = buckets_for(policy, self.clock())
        if known is not None:
            fresh.open = known[1].open  # a changed limit keeps the requests already open
        self._buckets[policy.name] = (policy, fresh)
        return fresh

    def admit_now(self, policy: KeyPolicy, prompt_tokens: int, tell: Tell) -> Admission:
        if not policy.limited:
            return UNLIMITED
        buckets = self._buckets_of(policy)
        seen = admit(policy, buckets, prompt_tokens, self.clock(), tell)

        def done(tokens: int | None) -> None:
            settle(buckets, prompt_tokens, tokens, self.clock())

        return Admission(seen, done)

    async def acquire(self, policy: KeyPolicy, prompt_tokens: int, tell: Tell) -> Admission:
        return self.admit_now(policy, prompt_tokens, tell)

    def forget(self, name: str) -> None:
        self._buckets.pop(name, None)
