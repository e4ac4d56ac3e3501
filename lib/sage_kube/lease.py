"""Leader election on a coordination.k8s.io Lease, the way Kubernetes' own controllers elect:
one holder renews the Lease every few seconds; the others take it over only once they have seen
it unchanged for a whole lease duration. Time is this process's monotonic clock from when it
last saw the Lease change, never the holder's timestamps, so clocks that disagree do not matter.

A holder that cannot renew steps down after two thirds of a lease duration, before any other
replica may take over (Kubernetes' renew deadline). `until_leading` waits to lead, `on_lost` is
called once when leading ends other than by `stop` (the operator exits then, as Kubernetes'
controllers do, and comes back as a standby), and on stop the holder releases the Lease so that
another replica takes over at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sage_kube.client import KubeClient
from sage_kube.errors import ApiError, Conflict, NotFound, Unreachable
from sage_kube.paths import resource_path

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"


def micro_time(now: datetime) -> str:
    """The MicroTime format of Lease timestamps."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Sighting:
    """The Lease as this process last saw it change."""

    version: str
    holder: str
    seen_at: float


def may_take(spec: dict[str, Any], sighting: Sighting | None, *, me: str, now: float, duration: float) -> bool:
    """Whether `me` may hold the Lease: nobody holds it, `me` does, or its holder has not renewed
    it for its lease duration (the Lease's own, else `duration`) as this process saw (pure)."""
    holder = spec.get("holderIdentity") or ""
    if not holder or holder == me:
        return True
    respected = float(spec.get("leaseDurationSeconds") or duration)
    return sighting is not None and now - sighting.seen_at >= respected


def held_spec(previous: dict[str, Any], *, me: str, duration: float, now: datetime) -> dict[str, Any]:
    """The Lease spec with `me` holding it from `now` (pure)."""
    spec = dict(previous)
    if spec.get("holderIdentity") != me:
        spec["acquireTime"] = micro_time(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if spec.get("holderIdentity") else 0)
    spec |= {"holderIdentity": me, "leaseDurationSeconds": max(1, round(duration)), "renewTime": micro_time(now)}
    return spec


class LeaseElector:
    """Holds `namespace/name` while it can, as `identity`."""

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: float = 15.0,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew_every = duration / 3
        self.renew_deadline = duration * 2 / 3
        self.on_lost = on_lost
        self.is_leader = False
        self._leading = asyncio.Event()
        self._sighting: Sighting | None = None
        self._renewed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        return resource_path(LEASE_API, "leases", self.namespace, self.name)

    async def try_hold(self) -> bool:
        """One round: create, renew or take over the Lease if allowed. Returns is_leader."""
        now = time.monotonic()
        try:
            lease = await self.kube.get(self.path)
        except NotFound:
            return await self._create(now)
        metadata, spec = lease.get("metadata") or {}, lease.get("spec") or {}
        version, holder = str(metadata.get("resourceVersion") or ""), str(spec.get("holderIdentity") or "")
        if self._sighting is None or self._sighting.version != version:
            self._sighting = Sighting(version, holder, now)
        if not may_take(spec, self._sighting, me=self.identity, now=now, duration=self.duration):
            return self._lost(f"held by {holder}")
        # A merge patch carrying the resourceVersion it read: the server refuses it (409) if another
        # replica wrote the Lease since (and the role needs `patch`, not `update`).
        body = {
            "metadata": {"resourceVersion": version},
            "spec": held_spec(spec, me=self.identity, duration=self.duration, now=datetime.now(UTC)),
        }
        try:
            await self.kube.patch(self.path, body)
        except Conflict:
            return self._lost("another replica renewed it first")
        return self._won(now, taken_from=holder)

    async def _create(self, now: float) -> bool:
        body = {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": held_spec({}, me=self.identity, duration=self.duration, now=datetime.now(UTC)),
        }
        try:
            await self.kube.create(resource_path(LEASE_API, "leases", self.namespace), body)
        except Conflict:
            return self._lost("another replica created it first")
        return self._won(now, taken_from="")

    def _won(self, now: float, *, taken_from: str) -> bool:
        if not self.is_leader:
            was = f" (from {taken_from})" if taken_from and taken_from != self.identity else ""
            log.info("lease %s/%s: %s leads%s", self.namespace, self.name, self.identity, was)
        self.is_leader, self._renewed_at, self._sighting = True, now, None
        self._leading.set()
        return True

    def _lost(self, why: str) -> bool:
        was_leader, self.is_leader = self.is_leader, False
        self._leading.clear()
        if was_leader:
            log.warning("lease %s/%s: %s no longer leads: %s", self.namespace, self.name, self.identity, why)
            if self.on_lost is not None:
                self.on_lost()
        return False

    async def until_leading(self) -> None:
        await self._leading.wait()

    async def run(self) -> None:
        while True:
            try:
                await self.try_hold()
            except (ApiError, Unreachable) as error:
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                if self.is_leader and time.monotonic() - self._renewed_at >= self.renew_deadline:
                    self._lost(f"could not renew it for {self.renew_deadline:.0f}s")
            await asyncio.sleep(self.renew_every)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"lease {self.namespace}/{self.name}")

    async def stop(self, *, release: bool = True) -> None:
        """Stops renewing; with `release`, hands the Lease back so another replica leads at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if release and self.is_leader:
            with contextlib.suppress(ApiError, Unreachable):
                lease = await self.kube.get(self.path)
                if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                    version = lease["metadata"]["resourceVersion"]
                    released = {"holderIdentity": None, "leaseDurationSeconds": 1}
                    await self.kube.patch(self.path, {"metadata": {"resourceVersion": version}, "spec": released})
        self.is_leader = False
        self._leading.clear()
