"""What the gateway holds for requests at once, bounded (pure): request bodies as they are read,
what parsing one costs while it is parsed, and the requests in flight. Over a bound a request gets
503 with Retry-After at once, instead of the gateway growing until it is OOM-killed.

Parsing JSON costs memory well beyond the body: 4 MiB of `[[],[],...]` becomes about 33 times that
in Python objects (measured, docs/gateway.md), so a body is charged PARSE_FACTOR times its size
while the gateway reads its routing fields, and only its own size while it is forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass

from sage_wire.errors import WireError, not_ready

PARSE_FACTOR = 40
"""Bytes charged per body byte while it is parsed (worst case measured: 36)."""


def overloaded(what: str, retry_after: int) -> WireError:
    error = not_ready(f"The gateway is at its limit of {what}; retry in {retry_after}s.", "overloaded", retry_after)
    return error


@dataclass
class Budget:
    """A count with a bound; `take` refuses what would cross it (but one holder may take it all)."""

    limit: int
    what: str
    """What is counted, for the 503's message, e.g. "buffered request bytes"."""
    retry_after: int = 1
    used: int = 0

    def take(self, amount: int) -> None:
        if self.used and self.used + amount > self.limit:
            raise overloaded(self.what, self.retry_after)
        self.used += amount

    def give(self, amount: int) -> None:
        self.used = max(0, self.used - amount)


class Held:
    """`amount` of a budget, taken on entering a `with` block (or refused with its 503) and given
    back on leaving it. A class: contextlib's generator-based manager cost three times as much,
    and this runs on every request."""

    __slots__ = ("amount", "budget")

    def __init__(self, budget: Budget, amount: int) -> None:
        self.budget = budget
        self.amount = amount

    def __enter__(self) -> None:
        self.budget.take(self.amount)

    def __exit__(self, *exc_info: object) -> None:
        self.budget.give(self.amount)
