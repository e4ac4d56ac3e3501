"""Level-based reconciliation of one LLMEngine: read it, render its children, converge them
(server-side apply where the cache differs), observe the Deployment and pods, load adapters,
write the status that tells the truth, and post an Event when the phase changes."""

from __future__ import annotations

import logging
import socket
from dataclasses import replace
from typing import Any

from sage_api import names
from sage_api.engine import LLMEngine, LLMEngineSpec
from sage_kube import ApiError
from sage_operator.core.cache import ObjectCache
from sage_operator.core.clock import utc_now
from sage_operator.core.controller import ControllerLoop, Key
from sage_operator.core.kinds import (
    CONFIG_MAP,
    DEPLOYMENT,
    DISRUPTION_BUDGET,
    ENGINE_OWNER,
    FINETUNE_JOB,
    LLM_ENGINE,
    NETWORK_POLICY,
    POD,
    SERVICE,
    SERVICE_ACCOUNT,
)
from sage_operator.core.metadata import MANAGED_SELECTOR, ScaleNote, render_event
from sage_operator.core.store import ForeignObject, KubeStore
from sage_operator.engine.adapters import AdapterLoader
from sage_operator.engine.credentials import admin_token, render_admin_secret
from sage_operator.engine.isolation import (
    render_engine_account,
    render_engine_disruption_budget,
    render_engine_network_policy,
)
from sage_operator.engine.name_claims import NameIndex, conflict_message
from sage_operator.engine.render import (
    adapter_paths,
    render_engine_adapter_list,
    render_engine_deployment,
    render_engine_service,
)
from sage_operator.engine.spec import InvalidSpec, check_spec, model_names, parse_spec, resolve_backend
from sage_operator.engine.status import (
    CHILD_CONFLICT,
    REFUSED_INVALID,
    Failure,
    Observed,
    compute_status,
    status_patch,
    transition_event,
)
from sage_operator.finetune.preemption import PAUSED_BY
from sage_operator.finetune.serving import finetune_adapters
from sage_operator.settings import OperatorSettings

# API answers that mean "not like this": 400 bad request, 403 forbidden (e.g. a ResourceQuota), 422 invalid;
# and 500, which admission gives when a webhook it must call cannot be reached, or a Service finds no
# free cluster IP: said in the status too, and retried.
REFUSALS = frozenset({400, 403, 422, 500})
FOREIGN_RECHECK_SECONDS = 30.0
log = logging.getLogger(__name__)


class EngineReconciler:
    def __init__(
        self, store: KubeStore, cache: ObjectCache, adapters: AdapterLoader, settings: OperatorSettings
    ) -> None:
        self.store = store
        self.cache = cache
        self.adapters = adapters
        self.settings = settings
        self.reporter = socket.gethostname()
        self.admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
        self._admin_secrets: set[tuple[str, str, str]] = set()
        self.loop = ControllerLoop(
            "llmengines",
            self.reconcile,
            self._all_keys,
            workers=settings.workers,
            resync_seconds=settings.resync_seconds,
        )
        for kind in (DEPLOYMENT, SERVICE, POD, NETWORK_POLICY, DISRUPTION_BUDGET, CONFIG_MAP):
            cache.watch(kind, self._child_changed, label=names.LABEL_ENGINE)
        cache.watch(SERVICE_ACCOUNT, self._child_changed, label=MANAGED_SELECTOR)  # the fine-tunes' too
        # FinetuneJobs hand adapters to engines: a job that will serve an engine, or one that
        # succeeded, concerns the engine it names.
        cache.watch(FINETUNE_JOB, self._finetunejob_changed)
        # Engines claiming the same model name: a change to one (created, renamed, deleted)
        # concerns the others' NameConflict condition.
        self.names = NameIndex(shared=frozenset(settings.shared_names))
        cache.watch(LLM_ENGINE, self._engine_changed)

    def _child_changed(self, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        engine = (metadata.get("labels") or {}).get(names.LABEL_ENGINE)
        if engine and metadata.get("namespace"):
            self.loop.enqueue(metadata["namespace"], engine)

    def _engine_changed(self, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        current = self.cache.get(LLM_ENGINE, namespace, name)  # None once it is deleted
        # Reconciles read the engine from this cache, so it is queued here, once the cache holds
        # the change (the echo of our own status write is skipped).
        self.loop.changed(namespace, name, metadata.get("resourceVersion"), deleted=current is None)
        for other in self.names.update(f"{namespace}/{name}", current):
            self.loop.enqueue(*other.split("/", 1))

    def _name_conflict(self, namespace: str, name: str) -> str | None:
        taken = self.names.taken(f"{namespace}/{name}")
        return conflict_message(taken) if taken else None

    def _finetunejob_changed(self, obj: dict[str, Any]) -> None:
        namespace = (obj.get("metadata") or {}).get("namespace")
        engine = ((obj.get("spec") or {}).get("serve") or {}).get("engine")
        if namespace and engine:
            self.loop.enqueue(namespace, engine)

    async def _all_keys(self) -> list[Key]:
        """Every engine the cache holds: a resync reads no list from the API server."""
        return [(item["metadata"]["namespace"], item["metadata"]["name"]) for item in self.cache.all(LLM_ENGINE)]

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        body = self.cache.get(LLM_ENGINE, namespace, name)
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
        finetuned = finetune_adapters(name, parsed, self.cache.list(FINETUNE_JOB, namespace))
        try:
            children = [
                render_engine_account(engine),
                render_engine_service(engine),
                render_engine_disruption_budget(engine),
                render_engine_adapter_list(engine, adapter_paths(parsed, finetuned.sources)),
            ]
            if self.settings.engine_peers is not None:
                children.append(render_engine_network_policy(engine, self.settings.engine_peers))
            # The Deployment comes last: its pods need the ServiceAccount and the ConfigMap.
            await self.store.converge_all([(child, self.cache.current(child)) for child in children])
            await self._create_admin_secret(engine)
            rendered = render_engine_deployment(engine, self.settings, finetuned)
            deployment = await self.store.converge(rendered, self.cache.current(rendered))
        except ForeignObject as conflict:
            refused = Failure(CHILD_CONFLICT, conflict.message)
            await self._write_status(
                metadata, previous, self._observed(name, namespace, metadata, parsed, refused=refused)
            )
            # The other object is not watched (it carries none of our labels): look again later.
            self.loop.enqueue_after(key, FOREIGN_RECHECK_SECONDS)
            return
        except ApiError as error:
            if error.status not in REFUSALS or error.namespace_terminating:
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
        pods = self.cache.list(POD, namespace, {names.LABEL_ENGINE: name})
        self.adapters.forget(self.cache.uids(POD))
        token = admin_token(self.admin_key, namespace, name) if self.admin_key else None
        adapters = await self.adapters.sync(pods, adapter_paths(parsed, finetuned.sources), token)
        if adapters.retry_in is not None:
            self.loop.enqueue_after(key, adapters.retry_in)
        observed = self._observed(
            name, namespace, metadata, parsed, deployment=deployment, pods=pods, loaded=adapters.loaded_everywhere
        )
        await self._write_status(metadata, previous, observed)

    async def _create_admin_secret(self, engine: LLMEngine) -> None:
        """Once per engine (and key) in this process: the Secret is never read back."""
        if self.admin_key is None:
            return
        metadata = engine.metadata
        written = (metadata["namespace"], metadata["name"], str(metadata.get("uid")))
        if written not in self._admin_secrets:
            await self.store.create_once(render_admin_secret(engine, self.admin_key))
            self._admin_secrets.add(written)

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
            scaled=ScaleNote.of(metadata),
        )

    async def _write_status(
        self, metadata: dict[str, Any], previous: dict[str, Any] | None, observed: Observed
    ) -> None:
        now = utc_now()
        observed = replace(observed, name_conflict=self._name_conflict(observed.namespace, observed.name))
        status = compute_status(observed, previous, now)
        patch = status_patch(previous, status)
        if patch is None:
            return
        version = await self.store.patch_status(LLM_ENGINE, observed.namespace, observed.name, patch)
        self.loop.wrote_status((observed.namespace, observed.name), version)
        if event := transition_event(previous, status):
            log.info("%s/%s: %s %s", observed.namespace, observed.name, event.reason, event.message)
            await self.store.post_event(
                render_event(
                    ENGINE_OWNER,
                    metadata,
                    event_type=event.type,
                    reason=event.reason,
                    message=event.message,
                    now=now,
                    reporter=self.reporter,
                )
            )
