"""Which replicas lack an adapter, as learnt from their answers (pure).

Every ready replica of an engine serves its static adapters (the engine loads them before it is
Ready), but an adapter handed off at run time reaches replicas one by one, and a replica that
restarts reads the adapters' ConfigMap as the kubelet last synced it. A replica that answers 404
for an adapter name is remembered here for a short while: the request moves to another replica
(a 404 comes before any work, so nothing ran twice) and the next requests for that adapter avoid
it, until the memory expires and the replica is asked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class AdapterMisses:
    seconds: float
    """How long a replica that lacked an adapter is passed over for it."""
    clock: Callable[[], float] = time.monotonic
    _until: dict[tuple[str, str], float] = field(default_factory=dict)

    def missed(self, model: str, url: str) -> None:
        if len(self._until) > 4096:  # replicas and adapters churn; keep the memory bounded
            self._expire()
        self._until[(model, url)] = self.clock() + self.seconds

    def serving(self, model: str, urls: Sequence[str]) -> Sequence[str]:
        """`urls` without the replicas known to lack `model`; all of them if that leaves none
        (one may have loaded it meanwhile, and a 404 from it is the honest answer otherwise)."""
        if not self._until:
            return urls
        now = self.clock()
        kept = [url for url in urls if self._until.get((model, url), 0.0) <= now]
        return kept or urls

    def _expire(self) -> None:
        now = self.clock()
        self._until = {key: until for key, until in self._until.items() if until > now}
