"""Per-minute limits as token buckets (pure): a bucket holds up to `capacity` units and refills at
`capacity` per minute. A request takes what it costs; usage learned afterwards may take more and
leave the bucket in debt. This is the model OpenAI describes for its own limits, so the
`x-ratelimit-reset-*` headers mean what clients expect: the time until the bucket is full again.
The same two numbers (level, stamp) are what a shared store keeps (see `shared`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PERIOD = 60.0


@dataclass(slots=True)
class Bucket:
    capacity: int
    level: float
    stamp: float
    """When `level` was last brought up to date (seconds, any monotonic clock)."""
    rate: float = field(init=False)
    """Units refilled per second (kept: every request of a limited key reads it)."""
    top: float = field(init=False)
    """The capacity as the level's type (kept, like `rate`)."""

    def __post_init__(self) -> None:
        self.rate = self.capacity / PERIOD
        self.top = float(self.capacity)

    @classmethod
    def full(cls, capacity: int, now: float) -> Bucket:
        return cls(capacity, float(capacity), now)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            level = self.level + (now - self.stamp) * self.rate
            self.level = level if level < self.top else self.top
            self.stamp = now

    def wait(self, now: float, amount: int) -> float:
        """Seconds until `amount` fits; 0 when it does now, inf when it never can."""
        self.refill(now)
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) / self.rate)

    def take(self, now: float, amount: float) -> None:
        """Take `amount` (negative gives back, up to capacity)."""
        self.refill(now)
        level = self.level - amount
        self.level = level if level < self.top else self.top

    def remaining(self, now: float) -> int:
        self.refill(now)
        return max(0, math.floor(self.level))

    def reset(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self.refill(now)
        return (self.capacity - self.level) / self.rate


def duration(seconds: float) -> str:
    """Seconds the way OpenAI's reset headers write them: 20ms, 1s, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"
