"""Routing policies: which ready replica gets the next request (pure).

One small interface, one class per policy:

- `LeastInflight`: the replica with the fewest requests in flight; ties rotate, so equal replicas
  take turns.
- `PrefixHash`: consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, 2018). The
  prompt prefix picks a point on a ring of virtual nodes; the request goes to the first replica
  clockwise whose load stays within `factor` times the average, so prompts sharing a prefix land
  where that prefix is cached without piling onto one replica.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sage_gateway.registry import PolicyName


class RoutingPolicy(Protocol):
    def choose(self, urls: Sequence[str], load: Mapping[str, int], affinity_key: str | None) -> str:
        """One of `urls` (never empty). `load` holds in-flight requests per URL (missing: 0)."""
        ...


class Inflight(Protocol):
    """Requests in flight per replica URL: this process's own (`InflightCounter`), or every
    worker's of a gateway with several (`workers.shared.SharedInflight`)."""

    @property
    def counts(self) -> Mapping[str, int]: ...

    def start(self, url: str) -> None: ...

    def finish(self, url: str) -> None: ...


class Tally(Protocol):
    """A count per key (an engine's held or routed requests): this process's or all workers'."""

    def add(self, key: str, delta: int = 1) -> None: ...

    def get(self, key: str, default: int = 0) -> int: ...


@dataclass
class LocalTally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, delta: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + delta

    def get(self, key: str, default: int = 0) -> int:
        return self.counts.get(key, default)


@dataclass
class InflightCounter:
    """Requests in flight per replica URL (in this process)."""

    counts: dict[str, int] = field(default_factory=dict)

    def start(self, url: str) -> None:
        self.counts[url] = self.counts.get(url, 0) + 1

    def finish(self, url: str) -> None:
        left = self.counts.get(url, 0) - 1
        if left > 0:
            self.counts[url] = left
        else:
            self.counts.pop(url, None)


@dataclass
class LeastInflight:
    """Fewest in-flight requests wins; ties rotate so that idle replicas share the work evenly."""

    _turn: int = 0

    def choose(self, urls: Sequence[str], load: Mapping[str, int], affinity_key: str | None) -> str:
        count = len(urls)
        if count == 1:
            return urls[0]
        self._turn = (self._turn + 1) % count
        best = urls[self._turn]
        best_load = load.get(best, 0)
        for step in range(1, count):
            url = urls[(self._turn + step) % count]
            url_load = load.get(url, 0)
            if url_load < best_load:
                best, best_load = url, url_load
        return best


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class _Ring:
    points: tuple[int, ...]
    owners: tuple[str, ...]


@dataclass
class PrefixHash:
    """Consistent hashing with bounded loads over the prompt prefix; no prefix -> least in-flight."""

    factor: float = 1.25
    """A replica takes at most ceil(factor * (in flight + 1) / replicas) requests; > 1."""
    virtual_nodes: int = 64
    _rings: dict[tuple[str, ...], _Ring] = field(default_factory=dict)
    _fallback: LeastInflight = field(default_factory=LeastInflight)

    def __post_init__(self) -> None:
        if self.factor <= 1:
            msg = f"the bounded-load factor must be above 1, got {self.factor}"
            raise ValueError(msg)

    def _ring(self, urls: Sequence[str]) -> _Ring:
        key = tuple(urls)
        ring = self._rings.get(key)
        if ring is None:
            placed = sorted((_point(f"{url}#{index}"), url) for url in key for index in range(self.virtual_nodes))
            ring = _Ring(tuple(point for point, _ in placed), tuple(url for _, url in placed))
            if len(self._rings) > 64:  # replica sets change rarely; keep the cache from growing
                self._rings.clear()
            self._rings[key] = ring
        return ring

    def capacity(self, urls: Sequence[str], load: Mapping[str, int]) -> int:
        total = sum(load.get(url, 0) for url in urls)
        return math.ceil(self.factor * (total + 1) / len(urls))

    def choose(self, urls: Sequence[str], load: Mapping[str, int], affinity_key: str | None) -> str:
        if affinity_key is None or len(urls) == 1:
            return self._fallback.choose(urls, load, affinity_key)
        ring = self._ring(urls)
        capacity = self.capacity(urls, load)
        start = bisect.bisect(ring.points, _point(affinity_key))
        size = len(ring.owners)
        for step in range(size):
            owner = ring.owners[(start + step) % size]
            if load.get(owner, 0) < capacity:
                return owner
        return self._fallback.choose(urls, load, affinity_key)  # unreachable: some replica is below average


def make_policy(name: PolicyName, *, factor: float = 1.25) -> RoutingPolicy:
    if name is PolicyName.PREFIX_HASH:
        return PrefixHash(factor=factor)
    return LeastInflight()
