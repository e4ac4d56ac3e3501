"""Level-based reconciliation of one FinetuneJob: converge its progress RBAC and Job, follow the
Job's suspend flag, compute the status, pause or restore preemptible engines, hand a finished
adapter to its engine, and post an Event when the phase changes."""

from __future__ import annotations

import logging
import socket
from typing import Any

from pydantic import ValidationError

from sage_api import names
from sage_api.conditions import merge_conditions, set_condition
from sage_api.finetune import FinetuneJob, FinetunePhase
from sage_kube import ApiError
from sage_operator.core.cache import ObjectCache
from sage_operator.core.clock import utc_now
from sage_operator.core.controller import ControllerLoop, Key
from sage_operator.core.kinds import FINETUNE_JOB, FINETUNE_OWNER, JOB, LLM_ENGINE, ROLE, ROLE_BINDING, SERVICE_ACCOUNT
from sage_operator.core.metadata import MANAGED_SELECTOR, render_event
from sage_operator.core.store import ForeignObject, KubeStore
from sage_operator.finetune.preemption import PAUSED_BY, pause_patches, restore_patches
from sage_operator.finetune.render import render_finetune_job, render_progress_rbac
from sage_operator.finetune.status import FINISHED, HOLDS_RESOURCES, JobView, compute_status
from sage_operator.finetune.volumes import SourceError
from sage_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


class FinetuneReconciler:
    def __init__(self, store: KubeStore, cache: ObjectCache, settings: OperatorSettings) -> None:
        self.store = store
        self.cache = cache
        self.image = settings.finetune_image
        self.reporter = socket.gethostname()
        self.loop = ControllerLoop(
            "finetunejobs",
            self.reconcile,
            self._all_keys,
            workers=max(1, settings.workers // 2),
            resync_seconds=settings.resync_seconds,
        )
        for kind in (JOB, ROLE, ROLE_BINDING):
            cache.watch(kind, self._child_changed, label=names.LABEL_FINETUNEJOB)
        cache.watch(SERVICE_ACCOUNT, self._child_changed, label=MANAGED_SELECTOR)  # the engines' too
        for kind in (FINETUNE_JOB, LLM_ENGINE):
            cache.keep(kind)  # the resync finds the jobs and the paused engines here

    def _child_changed(self, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        job = (metadata.get("labels") or {}).get(names.LABEL_FINETUNEJOB)
        if job and metadata.get("namespace"):
            self.loop.enqueue(metadata["namespace"], job)

    async def _all_keys(self) -> list[Key]:
        """Every FinetuneJob, and every name an engine is paused by (a job deleted while the
        operator was down still gives its engines back)."""
        keys = [(item["metadata"]["namespace"], item["metadata"]["name"]) for item in self.cache.all(FINETUNE_JOB)]
        for engine in self.cache.all(LLM_ENGINE):
            metadata = engine["metadata"]
            if paused_by := (metadata.get("annotations") or {}).get(PAUSED_BY):
                keys.append((metadata["namespace"], paused_by))
        return keys

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        raw = await self.store.get(FINETUNE_JOB, namespace, name)
        if raw is None:
            await self._restore_engines(namespace, name)
            return
        previous: dict[str, Any] = raw.get("status") or {}
        try:
            job = FinetuneJob.model_validate({k: v for k, v in raw.items() if k != "status"})
            rbac, manifest = render_progress_rbac(job), render_finetune_job(job, image=job.spec.image or self.image)
        except (ValidationError, SourceError) as error:
            await self._write_invalid(raw, previous, str(error))
            return
        try:
            for account in rbac:
                await self.store.converge(account, self.cache.current(account))
            observed = await self._ensure_job(job, manifest)
        except ForeignObject as conflict:
            await self._write_invalid(raw, previous, conflict.message, reason="ChildConflict")
            return
        status = compute_status(job, observed, previous, utc_now())
        phase = FinetunePhase(status["phase"])
        await self._coordinate_engines(job, phase)
        if phase is FinetunePhase.SUCCEEDED and job.spec.serve is not None:
            status["message"] = await self._hand_off(job)
        await self._write_status(job, previous, status)

    async def _ensure_job(self, job: FinetuneJob, manifest: dict[str, Any]) -> JobView:
        existing = self.cache.current(manifest)
        if existing is None:
            return JobView(await self.store.converge(manifest, None))
        # A Job's pod template is immutable once created: later spec edits take effect on a new
        # FinetuneJob. Suspension is the one switch that follows the spec.
        if bool(existing["spec"].get("suspend")) != job.spec.suspend:
            namespace, name = job.metadata["namespace"], job.metadata["name"]
            existing = await self.store.patch(JOB, namespace, name, {"spec": {"suspend": job.spec.suspend}})
        return JobView(existing)

    async def _coordinate_engines(self, job: FinetuneJob, phase: FinetunePhase) -> None:
        namespace, name = job.metadata["namespace"], job.metadata["name"]
        if job.spec.preempt_engines is None and phase not in FINISHED:
            return
        engines = await self.store.list(LLM_ENGINE, namespace)
        if phase in HOLDS_RESOURCES:
            patches = pause_patches(name, job.spec.preempt_engines, engines)
            verb = "paused"
        else:
            patches = restore_patches(name, engines)
            verb = "restored"
        for engine, patch in patches.items():
            log.info("FinetuneJob %s/%s %s engine %s", namespace, name, verb, engine)
            await self.store.patch(LLM_ENGINE, namespace, engine, patch)

    async def _restore_engines(self, namespace: str, name: str) -> None:
        for engine, patch in restore_patches(name, await self.store.list(LLM_ENGINE, namespace)).items():
            log.info("FinetuneJob %s/%s is gone; restoring engine %s", namespace, name, engine)
            await self.store.patch(LLM_ENGINE, namespace, engine, patch)

    async def _hand_off(self, job: FinetuneJob) -> str:
        assert job.spec.serve is not None
        namespace, name, engine = job.metadata["namespace"], job.metadata["name"], job.spec.serve.engine
        try:
            found = await self._add_engine_adapter(namespace, engine, {"name": name, "finetuneJob": name})
        except ApiError as error:
            return f"training finished; adding adapter {name} to LLMEngine {engine} failed: {error.message}"
        if not found:
            return f"training finished; LLMEngine {engine} (spec.serve.engine) does not exist"
        return f"training finished; LLMEngine {engine} serves it as model {name!r}"

    async def _add_engine_adapter(self, namespace: str, engine: str, adapter: dict[str, Any]) -> bool:
        """Adds `adapter` to the engine's spec.adapters unless one of that name is there. Uses a
        JSON patch guarded by the resourceVersion read, so concurrent edits are never lost."""
        current = await self.store.get(LLM_ENGINE, namespace, engine)
        if current is None:
            return False
        adapters = current["spec"].get("adapters")
        if any(a.get("name") == adapter["name"] for a in adapters or []):
            return True
        version = current["metadata"]["resourceVersion"]
        operations: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
        if adapters is None:
            operations.append({"op": "add", "path": "/spec/adapters", "value": [adapter]})
        else:
            operations.append({"op": "add", "path": "/spec/adapters/-", "value": adapter})
        await self.store.patch(LLM_ENGINE, namespace, engine, operations, patch_type="json")
        return True

    async def _write_status(self, job: FinetuneJob, previous: dict[str, Any], status: dict[str, Any]) -> None:
        metadata = job.metadata
        changed = {k: v for k, v in status.items() if previous.get(k) != v}
        if not changed:
            return
        await self._patch_status(metadata, changed)
        if previous.get("phase") != status["phase"]:
            phase = status["phase"]
            event = render_event(
                FINETUNE_OWNER,
                metadata,
                event_type="Warning" if phase == FinetunePhase.FAILED.value else "Normal",
                reason=phase,
                message=status["message"],
                now=utc_now(),
                reporter=self.reporter,
            )
            await self.store.post_event(event)

    async def _patch_status(self, metadata: dict[str, Any], status: dict[str, Any]) -> None:
        key = (metadata["namespace"], metadata["name"])
        self.loop.wrote_status(key, await self.store.patch_status(FINETUNE_JOB, *key, status))

    async def _write_invalid(
        self, raw: dict[str, Any], previous: dict[str, Any], message: str, reason: str = "InvalidSpec"
    ) -> None:
        metadata = raw["metadata"]
        condition = set_condition(
            previous.get("conditions"),
            "Failed",
            status=True,
            reason=reason,
            message=message,
            now=utc_now(),
            observed_generation=metadata.get("generation"),
        )
        status = {
            "phase": FinetunePhase.FAILED.value,
            "message": f"{reason}: {message}",
            "observedGeneration": metadata.get("generation"),
            "conditions": merge_conditions(previous.get("conditions"), [condition]),
        }
        if any(previous.get(k) != v for k, v in status.items()):
            await self._patch_status(metadata, status)
