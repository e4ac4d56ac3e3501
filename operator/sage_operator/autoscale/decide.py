"""The autoscaler's arithmetic (pure): from the demand the gateways report (requests in flight
plus requests held, summed over gateway replicas), the replicas an engine should have.

- The recommendation is `ceil(average demand over the window / targetInflightRequests)` within
  `[minReplicas, maxReplicas]`; 0 only when the whole window saw no demand and no new request.
- Up at once: a burst gets replicas as soon as the window's average says so.
- Down only to the highest recommendation of the last `scaleDownDelaySeconds` (the stabilisation
  of Kubernetes' HPA), so that bursty load does not start and stop GPUs again and again.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Bounds:
    min_replicas: int
    max_replicas: int
    target: int
    """targetInflightRequests: requests in flight one replica should carry."""
    scale_down_delay: float


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    """ScaledUp or ScaledDown."""
    message: str


@dataclass
class EngineHistory:
    demand: deque[tuple[float, float]] = field(default_factory=deque)
    """(time, demand) readings within the window."""
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, replicas) within the scale-down delay."""
    requests_seen: int | None = None
    since: float | None = None
    """The first reading: no scale-down before a whole delay has been watched (an operator that
    just started knows nothing of the minutes before)."""
    active_at: float | None = None
    """When a reading last showed demand or a new request."""


def clamp(value: int, bounds: Bounds) -> int:
    return max(bounds.min_replicas, min(bounds.max_replicas, value))


@dataclass
class Autoscaler:
    window: float
    histories: dict[str, EngineHistory] = field(default_factory=dict)

    def observe(self, key: str, now: float, demand: float, requests_total: int) -> None:
        """One reading of an engine: demand summed over gateways, and their requests counters summed."""
        history = self.histories.setdefault(key, EngineHistory())
        history.since = now if history.since is None else history.since
        history.demand.append((now, demand))
        while history.demand and history.demand[0][0] < now - self.window:
            history.demand.popleft()
        new_requests = history.requests_seen is not None and requests_total > history.requests_seen
        history.requests_seen = requests_total
        if demand > 0 or new_requests:
            history.active_at = now

    def forget(self, key: str) -> None:
        self.histories.pop(key, None)

    def average(self, key: str) -> float:
        readings = self.histories[key].demand if key in self.histories else deque()
        return sum(demand for _, demand in readings) / len(readings) if readings else 0.0

    def recommend(self, key: str, bounds: Bounds, now: float) -> int:
        history = self.histories.get(key)
        if history is None:
            return bounds.min_replicas
        wanted = math.ceil(self.average(key) / bounds.target)
        if wanted == 0 and history.active_at is not None and history.active_at >= now - self.window:
            wanted = 1  # requests came and went between readings: not idle
        return clamp(wanted, bounds)

    def decide(self, key: str, bounds: Bounds, current: int, now: float) -> Decision | None:
        """The change to make now, if any."""
        history = self.histories.setdefault(key, EngineHistory())
        recommended = self.recommend(key, bounds, now)
        history.recommendations.append((now, recommended))
        while history.recommendations and history.recommendations[0][0] < now - bounds.scale_down_delay:
            history.recommendations.popleft()
        average = self.average(key)
        if recommended > current:
            message = (
                f"{average:.1f} requests in flight on average over {self.window:.0f}s "
                f"(target {bounds.target} per replica): {current} -> {recommended} replicas"
            )
            return Decision(recommended, "ScaledUp", message)
        floor = max(replicas for _, replicas in history.recommendations)
        watched_long_enough = history.since is not None and now - history.since >= bounds.scale_down_delay
        if floor < current and watched_long_enough:
            if floor == 0:
                message = f"idle for {bounds.scale_down_delay:.0f}s: {current} -> 0 replicas"
            else:
                message = (
                    f"at most {floor} replicas needed for {bounds.scale_down_delay:.0f}s "
                    f"({average:.1f} in flight now): {current} -> {floor} replicas"
                )
            return Decision(floor, "ScaledDown", message)
        return None
