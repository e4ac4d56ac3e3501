"""The operator's in-memory view of the objects it watches beside its two custom resources: each
kind listed and watched once per watched namespace (sage_kube informers), selected server-side by
a label where one is given (the children of an engine or a fine-tune carry their owner's label),
so the operator never watches every pod or Job of the cluster. Each change is handed to the
callbacks registered for that kind, which map it to the keys to reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sage_kube import KubeClient, resource_path
from sage_kube.informer import EventType, Informer
from sage_operator.core.kinds import Kind, kind_of

OnChange = Callable[[dict[str, Any]], None]


class ObjectCache:
    def __init__(self, kube: KubeClient, namespaces: list[str]) -> None:
        self._kube = kube
        self._scopes: list[str | None] = list(namespaces) or [None]  # None: every namespace
        self._informers: dict[Kind, list[Informer]] = {}
        self._callbacks: dict[Kind, list[OnChange]] = {}
        self._labels: dict[Kind, str | None] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def watch(self, kind: Kind, on_change: OnChange, *, label: str | None = None) -> None:
        """Keep `kind` (only objects carrying `label`, when given) and call `on_change` on every
        change. Register before `start()`; a kind is watched with one selector."""
        if kind in self._labels and self._labels[kind] != label:
            msg = f"{kind.kind} is already watched with label {self._labels[kind]!r}"
            raise ValueError(msg)
        self._labels[kind] = label
        self._callbacks.setdefault(kind, []).append(on_change)
        if kind not in self._informers:
            self._informers[kind] = [
                Informer(self._kube, resource_path(kind.api_version, kind.plural, scope), self._dispatch(kind),
                         label_selector=label)
                for scope in self._scopes
            ]  # fmt: skip

    def keep(self, kind: Kind) -> None:
        """Keep every object of `kind` (no label, no callback of its own): for reads."""
        self.watch(kind, lambda _: None)

    def _dispatch(self, kind: Kind) -> Callable[[EventType, dict[str, Any]], None]:
        def changed(_: EventType, obj: dict[str, Any]) -> None:
            for callback in self._callbacks[kind]:
                callback(obj)

        return changed

    async def start(self) -> None:
        """Starts watching and returns once every cache holds the server's current objects."""
        informers = [informer for group in self._informers.values() for informer in group]
        self._tasks = [asyncio.create_task(informer.run(), name=f"watch {informer.path}") for informer in informers]
        await asyncio.gather(*(informer.synced.wait() for informer in informers))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        for informer in self._informers[kind]:
            if (found := informer.cache.get(f"{namespace}/{name}")) is not None:
                return found
        return None

    def current(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """The cached object a rendered manifest describes."""
        metadata = manifest["metadata"]
        return self.get(kind_of(manifest), metadata["namespace"], metadata["name"])

    def all(self, kind: Kind) -> list[dict[str, Any]]:
        """Every cached object of `kind`, in every watched namespace."""
        return [obj for informer in self._informers[kind] for obj in informer.cache.values()]

    def list(self, kind: Kind, namespace: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The cached objects of `kind` in `namespace` carrying every label of `labels`."""
        wanted = (labels or {}).items()
        return [
            obj
            for informer in self._informers[kind]
            for obj in informer.cache.values()
            if obj["metadata"].get("namespace") == namespace
            and all((obj["metadata"].get("labels") or {}).get(key) == value for key, value in wanted)
        ]

    def uids(self, kind: Kind) -> set[str]:
        """The uid of every cached object of `kind`."""
        return {
            str(obj["metadata"].get("uid")) for informer in self._informers[kind] for obj in informer.cache.values()
        }
