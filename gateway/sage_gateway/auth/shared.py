"""Limits shared by every gateway replica: each key's buckets and open requests live in Redis, and
one Lua script per admission decides atomically with the rules of `limits.verdict` (the tests run
one scenario against both and compare). Time is Redis's own clock, so replicas need not agree on
theirs.

Open requests are leases in a sorted set, scored by when they lapse: a replica renews the leases of
its open requests every few seconds, so the requests of a replica that died stop counting within
one lease. When Redis cannot be reached the gateway keeps serving with this replica's own limits
(`LocalLimiter`), says so in a log line and the `sage_gateway_shared_limits_up` gauge, and tries
Redis again after a short pause: never failing open silently, never failing every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from sage_gateway.auth.buckets import Bucket
from sage_gateway.auth.keys import KeyPolicy
from sage_gateway.auth.limiter import UNLIMITED, Admission, LocalLimiter
from sage_gateway.auth.limits import KeyBuckets, Tell, Verdict, readings, refusal
from sage_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

_LEVEL = """
local function level_of(key, capacity, now)
  local stored = redis.call('HMGET', key, 'level', 'stamp')
  local level, stamp = tonumber(stored[1]), tonumber(stored[2])
  if level == nil or stamp == nil then return capacity end
  if now > stamp then level = math.min(capacity, level + (now - stamp) * capacity / 60) end
  return level
end
local function store(key, capacity, level, now)
  redis.call('HSET', key, 'level', tostring(level), 'stamp', tostring(now))
  redis.call('EXPIRE', key, math.ceil((capacity - level) * 60 / capacity) + 1)
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# KEYS: requests bucket, tokens bucket, open leases. ARGV: rpm, tpm, max open (0: none), prompt
# tokens, lease id, lease seconds. Returns verdict, requests level, tokens level, open, now.
ADMIT = (
    _LEVEL
    + """
local rpm, tpm, max_open = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local prompt, lease = tonumber(ARGV[4]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local open = redis.call('ZCARD', KEYS[3])
local requests, tokens = 0, 0
if rpm > 0 then requests = level_of(KEYS[1], rpm, now) end
if tpm > 0 then tokens = level_of(KEYS[2], tpm, now) end
local verdict = 'ok'
if max_open > 0 and open >= max_open then verdict = 'open'
elseif rpm > 0 and requests < 1 then verdict = 'requests'
elseif tpm > 0 and prompt > tpm then verdict = 'too_large'
elseif tpm > 0 and tokens < prompt then verdict = 'tokens'
end
if verdict == 'ok' then
  if rpm > 0 then requests = requests - 1; store(KEYS[1], rpm, requests, now) end
  if tpm > 0 then tokens = tokens - prompt; store(KEYS[2], tpm, tokens, now) end
  redis.call('ZADD', KEYS[3], now + lease, ARGV[5])
  redis.call('EXPIRE', KEYS[3], lease * 2)
  open = open + 1
end
return {verdict, tostring(requests), tostring(tokens), open, tostring(now)}
"""
)

# KEYS: tokens bucket, open leases. ARGV: tpm (0: none), tokens to take (negative gives back), lease id.
SETTLE = (
    _LEVEL
    + """
redis.call('ZREM', KEYS[2], ARGV[3])
local tpm, delta = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 and delta ~= 0 then
  store(KEYS[1], tpm, math.min(tpm, level_of(KEYS[1], tpm, now) - delta), now)
end
return 1
"""
)

# KEYS: open leases. ARGV: lease seconds, then lease ids: each still open gets a fresh lease.
RENEW = """
local clock = redis.call('TIME')
local until_ = tonumber(clock[1]) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 1
"""

FAILURES = (RedisError, OSError, TimeoutError)


def connect(url: str, timeout: float, password: str | None = None) -> Redis:
    """A client that fails fast: one try, short timeouts (the fallback is better than waiting)."""
    return Redis.from_url(
        url,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _keys(prefix: str, policy: KeyPolicy) -> tuple[str, str, str]:
    tag = f"{prefix}{{{policy.name}}}"  # one hash slot per key on a Redis Cluster
    return f"{tag}:requests", f"{tag}:tokens", f"{tag}:open"


@dataclass
class RedisLimiter:
    redis: Redis
    metrics: GatewayMetrics
    fallback: LocalLimiter = field(default_factory=LocalLimiter)
    prefix: str = "sage:ratelimit:"
    lease_seconds: int = 30
    pause_after_failure: float = 2.0
    _down_until: float = 0.0
    _down: bool = False
    _leases: dict[str, set[str]] = field(default_factory=dict)
    """Open-lease key -> this replica's open lease ids there (renewed until they end)."""
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._admit = self.redis.register_script(ADMIT)
        self._settle = self.redis.register_script(SETTLE)
        self._renew = self.redis.register_script(RENEW)
        self.metrics.shared_limits_up.set(1)

    def _failed(self, error: BaseException) -> None:
        self._down_until = time.monotonic() + self.pause_after_failure
        if not self._down:
            self._down = True
            self.metrics.shared_limits_up.set(0)
            log.warning(
                "shared rate limits unreachable (%s: %s); limiting per gateway replica until Redis answers",
                type(error).__name__,
                error,
            )
        self.metrics.shared_limits_fallbacks.inc()

    def _answered(self) -> None:
        if self._down:
            self._down = False
            self.metrics.shared_limits_up.set(1)
            log.warning("shared rate limits reachable again: limits hold across gateway replicas")

    async def acquire(self, policy: KeyPolicy, prompt_tokens: int, tell: Tell) -> Admission:
        if not policy.limited:
            return UNLIMITED
        if self._down and time.monotonic() < self._down_until:
            self.metrics.shared_limits_fallbacks.inc()
            return self.fallback.admit_now(policy, prompt_tokens, tell)
        requests_key, tokens_key, open_key = _keys(self.prefix, policy)
        lease = uuid.uuid4().hex
        args = [policy.requests_per_minute or 0, policy.tokens_per_minute or 0, policy.max_concurrent or 0]
        try:
            found, requests, tokens, open_count, now = await self._admit(
                keys=[requests_key, tokens_key, open_key], args=[*args, prompt_tokens, lease, self.lease_seconds]
            )
        except FAILURES as error:
            self._failed(error)
            return self.fallback.admit_now(policy, prompt_tokens, tell)
        self._answered()
        clock = float(now)
        buckets = KeyBuckets(
            Bucket(policy.requests_per_minute, float(requests), clock) if policy.requests_per_minute else None,
            Bucket(policy.tokens_per_minute, float(tokens), clock) if policy.tokens_per_minute else None,
            int(open_count),
        )
        verdict = Verdict(found)
        if verdict is not Verdict.OK:
            raise refusal(verdict, policy, buckets, prompt_tokens, clock, tell=tell)
        self._leases.setdefault(open_key, set()).add(lease)

        def done(tokens: int | None) -> None:
            self._leases.get(open_key, set()).discard(lease)
            delta = tokens - prompt_tokens if tokens is not None else 0
            self._spawn(self._end(tokens_key, open_key, policy.tokens_per_minute or 0, delta, lease))

        return Admission(readings(buckets, clock), done)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end(self, tokens_key: str, open_key: str, tpm: int, delta: int, lease: str) -> None:
        try:
            await self._settle(keys=[tokens_key, open_key], args=[tpm, delta, lease])
        except FAILURES as error:  # the lease lapses on its own; the tokens are not charged
            log.debug("could not settle a request in Redis: %s", error)

    async def renew_forever(self) -> None:
        """Keeps this replica's open leases alive; runs until cancelled."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            for open_key, leases in list(self._leases.items()):
                if not leases:
                    self._leases.pop(open_key, None)
                    continue
                with contextlib.suppress(*FAILURES):
                    await self._renew(keys=[open_key], args=[self.lease_seconds, *leases])

    def forget(self, name: str) -> None:
        self.fallback.forget(name)

    async def drain(self) -> None:
        """Until every ended request is written back (settles run in the background)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self.redis.aclose()
