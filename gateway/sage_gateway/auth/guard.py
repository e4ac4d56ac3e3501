"""The gateway's door: who the caller is, which models they may use, and whether one more of their
requests may start now (this replica's counters; see docs/auth.md for several replicas)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sage_gateway.auth.keys import KeyPolicy, KeyRing
from sage_gateway.auth.limits import KeyBuckets, admit, buckets_for, limit_headers, settle
from sage_gateway.auth.usage import estimate_prompt_tokens
from sage_gateway.metrics import GatewayMetrics
from sage_wire.envelopes import Protocol
from sage_wire.errors import WireError


@dataclass
class Grant:
    """One admitted request of a key: the limit headers its answer carries, and what settles it."""

    policy: KeyPolicy
    headers: dict[str, str]
    settle: Callable[[int | None], None]
    """Called once when the request ends, with the tokens the engine reported (None: unknown)."""


def _limits_of(policy: KeyPolicy) -> tuple[int | None, int | None]:
    return policy.requests_per_minute, policy.tokens_per_minute


@dataclass
class Guard:
    ring: KeyRing
    metrics: GatewayMetrics
    required: bool
    """False: no keys are asked for (auth mode none)."""
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _buckets: dict[str, tuple[tuple[int | None, int | None], KeyBuckets]] = field(default_factory=dict)

    def caller(self, headers: Mapping[str, str]) -> KeyPolicy | None:
        """The key's policy; None when keys are not required; a 401 for a missing or bad key."""
        if not self.required:
            return None
        try:
            return self.ring.authenticate(headers, self.wall_clock())
        except WireError:
            self.metrics.auth_failures.inc()
            raise

    def _buckets_of(self, policy: KeyPolicy) -> KeyBuckets:
        limits = _limits_of(policy)
        known = self._buckets.get(policy.name)
        if known is not None and known[0] == limits:
            return known[1]
        fresh = buckets_for(policy, self.clock())
        if known is not None:
            fresh.open = known[1].open  # a changed limit keeps the requests already open
        self._buckets[policy.name] = (limits, fresh)
        return fresh

    def admit(self, caller: KeyPolicy | None, document: dict[str, Any], protocol: Protocol) -> Grant | None:
        """Start one request of `caller`, or raise its 429. None when keys are not required."""
        if caller is None:
            return None
        buckets = self._buckets_of(caller)
        estimate = estimate_prompt_tokens(document) if buckets.tokens is not None else 0
        wall = self.wall_clock()

        def tell(readings: Any) -> dict[str, str]:
            return limit_headers(readings, protocol, wall)

        try:
            seen = admit(caller, buckets, estimate, self.clock(), tell)
        except WireError as error:
            self.metrics.rate_limited.labels(caller.name, error.limit_kind or "requests").inc()
            raise
        self.metrics.key_requests.labels(caller.name).inc()

        def done(tokens: int | None) -> None:
            settle(buckets, estimate, tokens, self.clock())
            if tokens:
                self.metrics.key_tokens.labels(caller.name).inc(tokens)

        return Grant(caller, tell(seen), done)

    def forget(self, name: str) -> None:
        """A key is gone: its counters go too."""
        self._buckets.pop(name, None)
