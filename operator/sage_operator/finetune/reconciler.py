"""Level-based reconciliation of one FinetuneJob: ensure its progress RBAC and Job, follow the
Job's suspend flag, compute the status, pause or restore preemptible engines, hand a finished
adapter to its engine, and post an Event when the phase changes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sage_api.conditions import merge_conditions, set_condition
from sage_api.finetune import FinetuneJob, FinetunePhase
from sage_kube import ApiError
from sage_operator.finetune.preemption import PAUSED_BY, pause_patches, restore_patches
from sage_operator.finetune.render import render_finetune_event, render_finetune_job, render_progress_rbac
from sage_operator.finetune.status import FINISHED, HOLDS_RESOURCES, JobView, compute_status
from sage_operator.finetune.store import FinetuneStore
from sage_operator.finetune.volumes import SourceError
from sage_operator.workqueue import WorkQueue

Key = tuple[str, str]
log = logging.getLogger(__name__)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FinetuneReconciler:
    def __init__(self, store: FinetuneStore, *, image: str, namespaces: list[str], workers: int = 4) -> None:
        self.store = store
        self.image = image
        self.namespaces = namespaces
        self.queue: WorkQueue[Key] = WorkQueue(self.reconcile, workers=workers)

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    def enqueue(self, namespace: str, name: str) -> None:
        self.queue.add((namespace, name))

    async def resync(self) -> None:
        """Queues every FinetuneJob, and every name an engine is paused by (a job deleted while the
        operator was down still gives its engines back)."""
        for item in await self.store.list_finetunejobs(self.namespaces):
            self.enqueue(item["metadata"]["namespace"], item["metadata"]["name"])
        scopes: list[str | None] = list(self.namespaces) or [None]
        for namespace in scopes:
            for engine in await self.store.list_engines(namespace):
                metadata = engine["metadata"]
                if paused_by := (metadata.get("annotations") or {}).get(PAUSED_BY):
                    self.enqueue(metadata["namespace"], paused_by)

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        raw = await self.store.get_finetunejob(namespace, name)
        if raw is None:
            await self._restore_engines(namespace, name)
            return
        previous: dict[str, Any] = raw.get("status") or {}
        try:
            job = FinetuneJob.model_validate({k: v for k, v in raw.items() if k != "status"})
            manifests = [*render_progress_rbac(job), render_finetune_job(job, image=self.image)]
        except (ValidationError, SourceError) as error:
            await self._write_invalid(raw, previous, str(error))
            return
        observed = await self._ensure_job(job, manifests)
        status = compute_status(job, observed, previous, utc_now())
        phase = FinetunePhase(status["phase"])
        await self._coordinate_engines(job, phase)
        if phase is FinetunePhase.SUCCEEDED and job.spec.serve is not None:
            status["message"] = await self._hand_off(job)
        await self._write_status(job, previous, status)

    async def _ensure_job(self, job: FinetuneJob, manifests: list[dict[str, Any]]) -> JobView:
        *rbac, job_manifest = manifests
        for manifest in rbac:
            await self.store.apply(manifest)
        namespace, name = job.metadata["namespace"], job.metadata["name"]
        existing = await self.store.get_job(namespace, name)
        if existing is None:
            return JobView(await self.store.apply(job_manifest))
        # A Job's pod template is immutable once created: later spec edits take effect on a new
        # FinetuneJob. Suspension is the one switch that follows the spec.
        if bool(existing["spec"].get("suspend")) != job.spec.suspend:
            existing = await self.store.set_job_suspended(namespace, name, suspended=job.spec.suspend)
        return JobView(existing)

    async def _coordinate_engines(self, job: FinetuneJob, phase: FinetunePhase) -> None:
        namespace, name = job.metadata["namespace"], job.metadata["name"]
        if job.spec.preempt_engines is None and phase not in FINISHED:
            return
        engines = await self.store.list_engines(namespace)
        if phase in HOLDS_RESOURCES:
            patches = pause_patches(name, job.spec.preempt_engines, engines)
            verb = "paused"
        else:
            patches = restore_patches(name, engines)
            verb = "restored"
        for engine, patch in patches.items():
            log.info("FinetuneJob %s/%s %s engine %s", namespace, name, verb, engine)
            await self.store.patch_engine(namespace, engine, patch)

    async def _restore_engines(self, namespace: str, name: str) -> None:
        for engine, patch in restore_patches(name, await self.store.list_engines(namespace)).items():
            log.info("FinetuneJob %s/%s is gone; restoring engine %s", namespace, name, engine)
            await self.store.patch_engine(namespace, engine, patch)

    async def _hand_off(self, job: FinetuneJob) -> str:
        assert job.spec.serve is not None
        namespace, name, engine = job.metadata["namespace"], job.metadata["name"], job.spec.serve.engine
        try:
            found = await self.store.add_engine_adapter(namespace, engine, {"name": name, "finetuneJob": name})
        except ApiError as error:
            return f"training finished; adding adapter {name} to LLMEngine {engine} failed: {error.message}"
        if not found:
            return f"training finished; LLMEngine {engine} (spec.serve.engine) does not exist"
        return f"training finished; LLMEngine {engine} serves it as model {name!r}"

    async def _write_status(self, job: FinetuneJob, previous: dict[str, Any], status: dict[str, Any]) -> None:
        namespace, name = job.metadata["namespace"], job.metadata["name"]
        changed = {k: v for k, v in status.items() if previous.get(k) != v}
        if not changed:
            return
        await self.store.patch_status(namespace, name, changed)
        if previous.get("phase") != status["phase"]:
            await self.store.post_event(render_finetune_event(job, status["phase"], status["message"], utc_now()))

    async def _write_invalid(self, raw: dict[str, Any], previous: dict[str, Any], message: str) -> None:
        metadata = raw["metadata"]
        condition = set_condition(
            previous.get("conditions"),
            "Failed",
            status=True,
            reason="InvalidSpec",
            message=message,
            now=utc_now(),
            observed_generation=metadata.get("generation"),
        )
        status = {
            "phase": FinetunePhase.FAILED.value,
            "message": f"InvalidSpec: {message}",
            "observedGeneration": metadata.get("generation"),
            "conditions": merge_conditions(previous.get("conditions"), [condition]),
        }
        if any(previous.get(k) != v for k, v in status.items()):
            await self.store.patch_status(metadata["namespace"], metadata["name"], status)
