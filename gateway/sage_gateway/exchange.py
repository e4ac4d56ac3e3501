"""One request's passage through the gateway: which route it came in on, its request id, when
it started and (once the body is read) its model. Whoever finishes the exchange records it in
the metrics, exactly once: a stream's relay when its last chunk is out, the dispatcher for every
other answer once its last byte was sent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sage_gateway.auth.guard import Grant
from sage_gateway.auth.usage import Usage
from sage_gateway.budget import Budget
from sage_gateway.metrics import GatewayMetrics
from sage_wire.media import RawHeaders

UNKNOWN_MODEL = "unknown"
CLIENT_CLOSED = 499
"""nginx's convention for a client that went away; only ever seen in metrics."""


@dataclass
class Exchange:
    route: str
    """The route's metric name: chat, completions, embeddings, messages, models."""
    request_id: str
    metrics: GatewayMetrics
    headers: dict[str, str] = field(default_factory=dict)
    """The request's headers, lower-case names (headers.plain_headers)."""
    raw_headers: RawHeaders = field(default_factory=list)
    """The same, as the server gave them (what is forwarded goes on as bytes)."""
    started: float = field(default_factory=time.perf_counter)
    model: str = UNKNOWN_MODEL
    finished: bool = False
    grant: Grant | None = None
    """The caller's admission under its key's limits (None: no keys required)."""
    tokens: Usage | None = None
    """Tokens the engine reported for this request, once known."""
    strip_usage: bool = False
    """The gateway asked the engine for usage on a stream whose client did not: leave it out."""
    held_bytes: int = 0
    """Bytes of the gateway's buffer budget this request holds (its body), given back once it
    was forwarded."""
    gate: Budget | None = None
    """The bound on requests in flight this one counts against, until it finishes."""

    def finish(self, status: int) -> None:
        if not self.finished:
            self.finished = True
            self.metrics.observe_request(self.model, self.route, status, time.perf_counter() - self.started)
            if self.grant is not None:
                self.grant.settle(self.tokens)
            if self.gate is not None:
                self.gate.give(1)

    def first_byte(self) -> None:
        """The first chunk of a stream went out."""
        self.metrics.observe_first_byte(self.model, self.route, time.perf_counter() - self.started)
