"""Scale from zero: a request for an engine that scales down to zero (minReplicas: 0 with a
maxReplicas) and has no ready replica is held, not refused. The gateway asks for one replica
through the engine's scale subresource (the only write its role allows: `llmengines/scale`) and
waits until discovery reports a ready replica, or `SAGE_GATEWAY_HOLD_SECONDS` pass (then 503 with
Retry-After). Requests held for one engine share one scale-up; the patch only ever turns 0 into 1
(read, then written with the read's resourceVersion as a precondition), so gateway replicas never
fight each other, an autoscaler, or a person who scaled the engine by hand. An engine paused by a
FinetuneJob is never woken: the client is told which job holds it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from sage_api.names import ENGINE_PLURAL, GROUP, VERSION
from sage_gateway.errors import model_not_found, paused_for_finetune, scale_up_timed_out
from sage_gateway.metrics import GatewayMetrics
from sage_gateway.policies import LocalTally, Tally
from sage_gateway.registry import EngineInfo, EngineRegistry, Route, Unknown
from sage_kube import ApiError, KubeClient, resource_path

log = logging.getLogger(__name__)


class Scaler(Protocol):
    async def wake(self, engine: EngineInfo) -> bool:
        """Ask for one replica of `engine` if it has none; whether this call changed it."""
        ...


@dataclass
class Waker:
    registry: EngineRegistry
    scaler: Scaler
    metrics: GatewayMetrics
    hold_seconds: float
    retry_after: int
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _waking: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    held: Tally = field(default_factory=LocalTally)
    """Requests held now, per engine key (with several workers: all workers')."""

    def notify(self) -> None:
        """The registry changed: every held request looks again."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _wake(self, engine: EngineInfo) -> None:
        if engine.key in self._waking or engine.replicas != 0:
            return
        task = asyncio.create_task(self._scale_up(engine), name=f"sage-gateway-wake-{engine.key}")
        self._waking[engine.key] = task

    async def _scale_up(self, engine: EngineInfo) -> None:
        try:
            if await self.scaler.wake(engine):
                self.metrics.scale_ups.labels(engine.served_name).inc()
                log.info("engine %s scaled from zero to one replica for a held request", engine.key)
        except Exception as error:  # the hold times out and says so; the next request tries again
            log.warning("could not scale engine %s from zero: %s", engine.key, error)
        finally:
            self._waking.pop(engine.key, None)

    async def hold(self, model: str, engine: EngineInfo) -> Route:
        """The route of `model` once a replica is ready; WireError 503 when the engine is paused
        by a FinetuneJob meanwhile or no replica turned ready within the hold time."""
        started = time.monotonic()
        deadline = started + self.hold_seconds
        held = self.metrics.held_requests.labels(model)
        held.inc()
        self.held.add(engine.key)
        try:
            while True:
                found = self.registry.resolve(model)
                if isinstance(found, Route):
                    self.metrics.hold_seconds.labels(model).observe(time.monotonic() - started)
                    return found
                if isinstance(found, Unknown):  # deleted while held
                    raise model_not_found(model, list(found.known))
                current = found.engine
                if current.paused_by:
                    raise paused_for_finetune(model, current.paused_by, self.retry_after)
                self._wake(current)
                changed = self._changed
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise scale_up_timed_out(model, self.hold_seconds, self.retry_after)
                with contextlib.suppress(TimeoutError):  # then look again: a failed scale-up is retried
                    await asyncio.wait_for(changed.wait(), min(remaining, 5.0))
        finally:
            held.dec()
            self.held.add(engine.key, -1)


@dataclass
class KubeScaler:
    """Wakes engines through the scale subresource of LLMEngines."""

    client: KubeClient

    async def wake(self, engine: EngineInfo) -> bool:
        namespace, _, name = engine.key.partition("/")
        path = resource_path(f"{GROUP}/{VERSION}", ENGINE_PLURAL, namespace, name, "scale")
        scale = await self.client.get(path)
        if (scale.get("spec") or {}).get("replicas", 0) != 0:  # a Scale at zero omits the field
            return False
        version = scale["metadata"]["resourceVersion"]
        try:  # the resourceVersion makes this a compare-and-swap: 409 if it changed since the read
            await self.client.patch(path, {"metadata": {"resourceVersion": version}, "spec": {"replicas": 1}})
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True
