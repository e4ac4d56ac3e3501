"""Level-based reconciliation of one LLMEngine: read it, render its children, server-side apply
them, observe the Deployment and pods, load adapters, write the status that tells the truth, and
post an Event when the phase changes. Every trigger (engine, child or pod change, the resync
timer) just queues the engine's key; the work queue coalesces them."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime
from typing import Any

from sage_api.engine import LLMEngine, LLMEngineSpec
from sage_kube import ApiError
from sage_operator.adapters import AdapterLoader
from sage_operator.engine_spec import InvalidSpec, check_spec, model_names, parse_spec, resolve_backend
from sage_operator.finetune.preemption import PAUSED_BY
from sage_operator.finetune.serving import finetune_adapters
from sage_operator.kube_io import ChildWatch, EngineStore
from sage_operator.render import adapter_paths, covers, render_engine_deployment, render_engine_service, render_event
from sage_operator.settings import OperatorSettings
from sage_operator.status import (
    REFUSED_INVALID,
    Failure,
    Observed,
    compute_status,
    status_patch,
    transition_event,
)
from sage_operator.workqueue import WorkQueue

Key = tuple[str, str]
# API answers that mean "not like this": 400 bad request, 403 forbidden (e.g. a ResourceQuota), 422 invalid.
REFUSALS = frozenset({400, 403, 422})
log = logging.getLogger(__name__)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(self, store: EngineStore, adapters: AdapterLoader, settings: OperatorSettings) -> None:
        self.store = store
        self.children = ChildWatch(store.kube, settings.namespaces, self.enqueue)
        self.adapters = adapters
        self.settings = settings
        self.queue: WorkQueue[Key] = WorkQueue(self.reconcile, workers=settings.workers)
        self.reporter = socket.gethostname()
        self._resync_task: asyncio.Task[None] | None = None
        # The resourceVersion each engine got from our last status write: its watch event needs no reconcile.
        self._own_writes: dict[Key, str] = {}

    async def start(self) -> None:
        """Reconciling starts once the children's caches are filled, so that the first status written
        after a (re)start is computed from everything that exists."""
        await self.children.start()
        self.queue.start()
        self._resync_task = asyncio.create_task(self._resync_forever(), name="resync")

    async def stop(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            await asyncio.gather(self._resync_task, return_exceptions=True)
        await self.queue.stop()
        await self.children.stop()

    def enqueue(self, namespace: str, name: str) -> None:
        self.queue.add((namespace, name))

    def engine_changed(self, namespace: str, name: str, resource_version: str | None, deleted: bool) -> None:
        """An LLMEngine watch event; the echo of the operator's own status write is ignored."""
        key = (namespace, name)
        if deleted:
            self._own_writes.pop(key, None)
        elif resource_version is not None and self._own_writes.get(key) == resource_version:
            return
        self.queue.add(key)

    async def _resync_forever(self) -> None:
        """The safety net: every engine is reconciled at least every `resync_seconds`, so drift that
        no watch event reported (a missed event, an edit while the operator was down) is corrected."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            try:
                for key in await self.store.list_engine_keys(self.settings.namespaces):
                    self.queue.add(key)
            except Exception:
                log.exception("resync listing failed; trying again next period")

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        body = await self.store.get_engine(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # owner references let the garbage collector remove the children
        metadata = body["metadata"]
        previous: dict[str, Any] | None = body.get("status")
        parsed = parse_spec(body.get("spec"))
        invalid = parsed if isinstance(parsed, InvalidSpec) else check_spec(parsed, name)
        if isinstance(parsed, InvalidSpec) or invalid is not None:
            observed = Observed(
                name=name,
                namespace=namespace,
                generation=int(metadata.get("generation") or 0),
                desired_replicas=int((body.get("spec") or {}).get("replicas") or 0),
                backend=None,
                model_names=[],
                invalid=invalid,
            )
            await self._write_status(metadata, previous, observed)
            return
        engine = LLMEngine.model_validate({"metadata": metadata, "spec": parsed})
        finetuned = finetune_adapters(name, parsed, self.children.finetunejobs(namespace))
        try:
            await self._converge(render_engine_service(engine), "services")
            deployment = await self._converge(
                render_engine_deployment(engine, self.settings, finetuned.claims), "deployments"
            )
        except ApiError as error:
            if error.status not in REFUSALS:
                raise
            # Said in the status; an invalid object waits for a spec change, anything else is retried.
            final = error.status == 422
            reason = REFUSED_INVALID if final else "ChildRefused"
            refused = Failure(reason, f"the API server refused the engine's children: {error.message}")
            await self._write_status(
                metadata, previous, self._observed(name, namespace, metadata, parsed, refused=refused)
            )
            if not final:
                raise
            return
        pods = self.children.pods(namespace, name)
        self.adapters.forget(self.children.pod_uids())
        adapters = await self.adapters.sync(pods, adapter_paths(parsed, finetuned.sources))
        if adapters.retry_in is not None:
            self.queue.add_after(key, adapters.retry_in)
        observed = self._observed(
            name, namespace, metadata, parsed, deployment=deployment, pods=pods, loaded=adapters.loaded_everywhere
        )
        await self._write_status(metadata, previous, observed)

    @staticmethod
    def _observed(
        name: str,
        namespace: str,
        metadata: dict[str, Any],
        spec: LLMEngineSpec,
        *,
        deployment: dict[str, Any] | None = None,
        pods: list[dict[str, Any]] | None = None,
        loaded: list[str] | None = None,
        refused: Failure | None = None,
    ) -> Observed:
        return Observed(
            name=name,
            namespace=namespace,
            generation=int(metadata.get("generation") or 0),
            desired_replicas=spec.replicas,
            backend=resolve_backend(spec),
            model_names=model_names(spec, name),
            deployment=deployment,
            pods=pods or [],
            loaded_adapters=loaded or [],
            refused=refused,
            paused_by=(metadata.get("annotations") or {}).get(PAUSED_BY),
        )

    async def _converge(self, desired: dict[str, Any], plural: str) -> dict[str, Any]:
        """The child as it is once it holds what was rendered: applied only when the cached object
        differs (missing, hand-edited, outdated), which keeps a steady state free of API writes."""
        metadata = desired["metadata"]
        observed = self.children.get(plural, metadata["namespace"], metadata["name"])
        if observed is not None and covers(observed, desired):
            return observed
        return await self.store.apply(desired)

    async def _write_status(
        self, metadata: dict[str, Any], previous: dict[str, Any] | None, observed: Observed
    ) -> None:
        now = utc_now()
        status = compute_status(observed, previous, now)
        patch = status_patch(previous, status)
        if patch is None:
            return
        version = await self.store.patch_status(observed.namespace, observed.name, patch)
        if version is not None:
            self._own_writes[(observed.namespace, observed.name)] = version
        if event := transition_event(previous, status):
            log.info("%s/%s: %s %s", observed.namespace, observed.name, event.reason, event.message)
            await self.store.post_event(
                render_event(
                    metadata,
                    event_type=event.type,
                    reason=event.reason,
                    message=event.message,
                    now=now,
                    reporter=self.reporter,
                )
            )
