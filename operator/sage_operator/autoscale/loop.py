"""The autoscaler's I/O: every `autoscale_seconds`, read GET /load from every gateway replica,
sum the demand per engine, and apply the decisions of `decide` through the scale subresource,
with an Event for each change. Engines without `maxReplicas` are left alone (an HPA, KEDA or a
person scales them). A tick on which no gateway answered decides nothing: the operator never
scales down on what it could not see.

Gateways are named by `SAGE_OPERATOR_GATEWAY_URLS`: `http://host:port` entries, or
`dns+http://name:port` for a headless Service, whose DNS answer lists every ready gateway pod."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from sage_api import names
from sage_operator.autoscale.decide import Autoscaler, Bounds
from sage_operator.core.kinds import ENGINE_OWNER, LLM_ENGINE
from sage_operator.core.metadata import ScaleNote, render_event
from sage_operator.core.store import KubeStore

log = logging.getLogger(__name__)

SCALED = names.ANNOTATION_SCALED
DEFAULT_SCALE_DOWN_DELAY = 300.0
DEFAULT_TARGET = 8


def waking_message(engine: Mapping[str, Any], held: int) -> str | None:
    """What to say of an engine a gateway woke from zero while requests wait for its first replica,
    once per wake (None when nothing waits, a replica is ready, or it was said already)."""
    ready = int((engine.get("status") or {}).get("readyReplicas") or 0)
    desired = int((engine.get("spec") or {}).get("replicas") or 0)
    note = ScaleNote.of(dict(engine.get("metadata") or {}))
    if held <= 0 or ready > 0 or desired == 0 or (note is not None and note.reason == "ScalingUp"):
        return None
    return f"{held} request{'' if held == 1 else 's'} waiting for a replica to be ready"


def bounds_of(spec: Mapping[str, Any]) -> Bounds | None:
    """The autoscaling bounds of an LLMEngine spec; None when it is not autoscaled by us."""
    maximum = spec.get("maxReplicas")
    if not isinstance(maximum, int):
        return None
    minimum = spec.get("minReplicas")
    return Bounds(
        min_replicas=minimum if isinstance(minimum, int) else 1,
        max_replicas=maximum,
        target=int(spec.get("targetInflightRequests") or DEFAULT_TARGET),
        scale_down_delay=float(spec.get("scaleDownDelaySeconds") or DEFAULT_SCALE_DOWN_DELAY),
    )


async def resolve(urls: Iterable[str]) -> list[str]:
    """`dns+http://name:port` -> one http://address:port per A/AAAA record; others as given."""
    resolved: list[str] = []
    loop = asyncio.get_running_loop()
    for url in urls:
        if not url.startswith("dns+"):
            resolved.append(url.rstrip("/"))
            continue
        parts = urlsplit(url.removeprefix("dns+"))
        host, port = parts.hostname or "", parts.port or 80
        try:
            records = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            log.warning("autoscaler: cannot resolve %s: %s", host, error)
            continue
        for address in sorted({str(record[4][0]) for record in records}):
            shown = f"[{address}]" if ":" in address else address
            resolved.append(f"{parts.scheme}://{shown}:{port}")
    return resolved


@dataclass
class LoadReadings:
    """The gateways' reports summed per engine key: demand (in flight + held) and requests."""

    demand: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    answered: int = 0

    def add(self, report: Mapping[str, Any]) -> None:
        self.answered += 1
        for key, load in (report.get("engines") or {}).items():
            held = int(load.get("held", 0))
            self.demand[key] = self.demand.get(key, 0.0) + float(load.get("inflight", 0)) + held
            self.requests[key] = self.requests.get(key, 0) + int(load.get("requests", 0))
            self.held[key] = self.held.get(key, 0) + held


@dataclass
class AutoscaleLoop:
    store: KubeStore
    gateway_urls: list[str]
    interval: float
    window: float
    reporter: str = "sage-operator"
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    """LLMEngine key -> a shallow copy of its last seen object (fed by the engine cache)."""
    autoscaler: Autoscaler = field(init=False)
    _task: asyncio.Task[None] | None = None
    _http: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self.autoscaler = Autoscaler(self.window)

    def track(self, namespace: str, name: str, body: Mapping[str, Any] | None, *, deleted: bool) -> None:
        key = f"{namespace}/{name}"
        if deleted or body is None:
            self.engines.pop(key, None)
            self.autoscaler.forget(key)
        else:
            self.engines[key] = dict(body)

    async def read(self) -> LoadReadings:
        readings = LoadReadings()
        assert self._http is not None
        for url in await resolve(self.gateway_urls):
            try:
                response = await self._http.get(f"{url}/load")
                response.raise_for_status()
                readings.add(response.json())
            except (httpx.HTTPError, ValueError) as error:
                log.warning("autoscaler: gateway %s did not report its load: %s", url, error)
        return readings

    async def tick(self) -> None:
        autoscaled = {
            key: (obj, bounds) for key, obj in self.engines.items() if (bounds := bounds_of(obj.get("spec") or {}))
        }
        if not autoscaled:
            return
        readings = await self.read()
        if readings.answered == 0:
            log.warning("autoscaler: no gateway answered; nothing decided this time")
            return
        now = time.monotonic()
        for key, (obj, bounds) in autoscaled.items():
            metadata = obj.get("metadata") or {}
            if (metadata.get("annotations") or {}).get(names.ANNOTATION_PAUSED_BY):
                continue  # a FinetuneJob holds it at zero
            self.autoscaler.observe(key, now, readings.demand.get(key, 0.0), readings.requests.get(key, 0))
            current = int((obj.get("spec") or {}).get("replicas", 1))
            decision = self.autoscaler.decide(key, bounds, current, now)
            if decision is not None:
                await self._apply(obj, decision.replicas, decision.reason, decision.message)
            elif waiting := waking_message(obj, readings.held.get(key, 0)):
                await self._note(obj, "ScalingUp", waiting)

    async def _apply(self, obj: dict[str, Any], replicas: int, reason: str, message: str) -> None:
        metadata = obj["metadata"]
        await self.store.scale(LLM_ENGINE, metadata["namespace"], metadata["name"], replicas)
        # Until the watch brings the new object; a new spec, not an edit: the nested dicts are
        # the engine cache's own.
        obj["spec"] = {**(obj.get("spec") or {}), "replicas": replicas}
        await self._note(obj, "ScaledToZero" if replicas == 0 else reason, message, event_reason=reason)

    async def _note(self, obj: dict[str, Any], reason: str, message: str, *, event_reason: str | None = None) -> None:
        """Says why on the engine (annotation -> condition Scaled) and in an Event."""
        metadata = obj["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        log.info("autoscaler: %s/%s %s: %s", namespace, name, reason, message)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        note = ScaleNote(reason, message, now).encode()
        patched = await self.store.patch(LLM_ENGINE, namespace, name, {"metadata": {"annotations": {SCALED: note}}})
        obj["metadata"] = patched.get("metadata") or metadata
        event = render_event(
            ENGINE_OWNER,
            metadata,
            event_type="Normal",
            reason=event_reason or reason,
            message=message,
            now=now,
            reporter=self.reporter,
        )
        await self.store.post_event(event)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as self._http:
            while True:
                try:
                    await self.tick()
                except Exception:  # one bad tick must not end autoscaling
                    log.exception("autoscaler: tick failed")
                await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.gateway_urls:
            self._task = asyncio.create_task(self.run(), name="sage-operator-autoscaler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
