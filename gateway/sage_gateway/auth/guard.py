"""The gateway's door: who the caller is, which models they may use, and whether one more of their
requests may start now (under the limits a `Limiter` keeps: this replica's, or shared)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from sage_gateway.auth.keys import KeyPolicy, KeyRing
from sage_gateway.auth.limiter import Admission, Limiter, LocalLimiter
from sage_gateway.auth.limits import Tell, anthropic_headers, openai_headers
from sage_gateway.auth.usage import Usage, estimate_prompt_tokens
from sage_gateway.metric_tally import MetricTally
from sage_gateway.metrics import GatewayMetrics
from sage_wire.envelopes import Protocol
from sage_wire.errors import WireError
from sage_wire.media import RawHeaders


@dataclass(slots=True)
class Grant:
    """One admitted request of a key: the limit headers its answer carries, and what settles it."""

    policy: KeyPolicy
    headers: RawHeaders
    """The limit headers, as they go out."""
    admission: Admission
    counters: tuple[Counter, Counter, Counter]
    """The key's requests, prompt-token and completion-token counters for the request's model."""
    tally: MetricTally

    def settle(self, usage: Usage | None) -> None:
        """Called once when the request ends, with the tokens the engine reported (None: unknown)."""
        if usage is None:
            self.admission.settle(None)
            return
        self.admission.settle(usage.prompt + usage.completion)
        self.tally.count(self.counters[1], usage.prompt)
        self.tally.count(self.counters[2], usage.completion)


@dataclass
class Guard:
    ring: KeyRing
    metrics: GatewayMetrics
    required: bool
    """False: no keys are asked for (auth mode none)."""
    limiter: Limiter = field(default_factory=LocalLimiter)
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _tellers: dict[Protocol, Tell] = field(init=False)

    def __post_init__(self) -> None:
        # How readings become headers, per protocol; only Anthropic's need the wall clock.
        self._tellers = {
            Protocol.OPENAI: openai_headers,
            Protocol.ANTHROPIC: lambda seen: anthropic_headers(seen, self.wall_clock()),
        }

    def caller(self, headers: Mapping[str, str]) -> KeyPolicy | None:
        """The key's policy; None when keys are not required; a 401 for a missing or bad key."""
        if not self.required:
            return None
        try:
            return self.ring.authenticate(headers, self.wall_clock)
        except WireError:
            self.metrics.auth_failures.inc()
            raise

    async def admit(self, caller: KeyPolicy | None, document: dict[str, Any], protocol: Protocol) -> Grant | None:
        """Start one request of `caller`, or raise its 429. None when keys are not required."""
        if caller is None:
            return None
        estimate = estimate_prompt_tokens(document) if caller.tokens_per_minute else 0
        tell = self._tellers.get(protocol) or openai_headers
        limiter = self.limiter
        try:
            if isinstance(limiter, LocalLimiter):  # decided at once: no coroutine to await
                admission = limiter.admit_now(caller, estimate, tell)
            else:
                admission = await limiter.acquire(caller, estimate, tell)
        except WireError as error:
            self.metrics.rate_limited.labels(caller.name, error.limit_kind or "requests").inc()
            raise
        model = str(document.get("model"))  # a name the caller may use: resolved before admission
        metrics = self.metrics
        counters = metrics.key_counters(caller.name, model)
        metrics.tally.count(counters[0])
        return Grant(caller, tell(admission.readings), admission, counters, metrics.tally)

    def forget(self, name: str) -> None:
        """A key is gone: its counters go too."""
        self.limiter.forget(name)
        self.metrics.forget_key(name)
