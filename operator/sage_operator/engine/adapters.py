"""Keeps every ready engine pod serving the engine's static LoRA adapters: asks each pod what it
serves, loads what is missing, backs off per pod and adapter when a load fails. A restarted pod
reports fewer models and is simply loaded again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sage_operator.engine.engine_client import EngineClient, EngineUnavailable
from sage_operator.engine.status import pod_is_ready

log = logging.getLogger(__name__)


@dataclass
class AdapterSync:
    """The outcome for one engine: adapters served by every ready pod, and when to look again."""

    loaded_everywhere: list[str]
    retry_in: float | None = None


@dataclass
class _Backoff:
    attempts: int = 0
    not_before: float = 0.0


@dataclass
class AdapterLoader:
    client: EngineClient
    port: int
    max_backoff: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _backoff: dict[tuple[str, str], _Backoff] = field(default_factory=dict)

    def forget(self, pod_uids: set[str]) -> None:
        """Drop back-off state of pods that no longer exist (`pod_uids`: every engine pod there is)."""
        for key in [key for key in self._backoff if key[0] not in pod_uids]:
            del self._backoff[key]

    async def sync(self, pods: list[dict[str, Any]], wanted: dict[str, str], token: str | None = None) -> AdapterSync:
        """`token`: the engine's adapter-route credential (engine.credentials), when it has one."""
        ready = [pod for pod in pods if pod_is_ready(pod) and (pod.get("status") or {}).get("podIP")]
        if not wanted:
            return AdapterSync([])
        everywhere: set[str] | None = None
        retry: list[float] = []
        for pod in ready:
            loaded, wait = await self._sync_pod(pod, wanted, token)
            everywhere = loaded if everywhere is None else everywhere & loaded
            if wait is not None:
                retry.append(wait)
        served = [name for name in wanted if everywhere and name in everywhere]
        return AdapterSync(served, min(retry) if retry else None)

    async def _sync_pod(
        self, pod: dict[str, Any], wanted: dict[str, str], token: str | None
    ) -> tuple[set[str], float | None]:
        uid, pod_name = pod["metadata"].get("uid", ""), pod["metadata"].get("name", "")
        url = f"http://{pod['status']['podIP']}:{self.port}"
        try:
            loaded = await self.client.served_models(url) & set(wanted)
        except EngineUnavailable as error:
            log.info("pod %s: cannot list its models yet: %s", pod_name, error)
            return set(), self._failed((uid, ""))
        retry: float | None = None
        for name, path in wanted.items():
            if name in loaded:
                self._backoff.pop((uid, name), None)
                continue
            state = self._backoff.get((uid, name))
            now = self.clock()
            if state is not None and now < state.not_before:
                retry = min(retry or state.not_before - now, state.not_before - now)
                continue
            try:
                await self.client.load_adapter(url, name, path, token)
            except EngineUnavailable as error:
                log.warning("pod %s: loading adapter %s from %s failed: %s", pod_name, name, path, error)
                wait = self._failed((uid, name))
                retry = min(retry or wait, wait)
                continue
            self._backoff.pop((uid, name), None)
            loaded.add(name)
            log.info("pod %s: loaded adapter %s from %s", pod_name, name, path)
        self._backoff.pop((uid, ""), None)
        return loaded, retry

    def _failed(self, key: tuple[str, str]) -> float:
        state = self._backoff.setdefault(key, _Backoff())
        state.attempts += 1
        wait: float = min(0.5 * 2.0 ** (state.attempts - 1), self.max_backoff)
        state.not_before = self.clock() + wait
        return wait
