"""The thin kopf layer: log in with the same credentials as sage_kube, tune kopf, build the
controller core once from the settings `__main__` put in the memo, and turn every watch event of
a FinetuneJob into a queued reconcile. LLMEngines and the children are watched by the core's
cache, not by kopf: its label filters would watch every pod and Job of the cluster, and a second
watch of the engines would decode every engine change twice (a tenth of the operator's CPU while
1,000 engines are created); the engines' cache feeds the autoscaler too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from sage_api import names
from sage_kube import KubeClient, load_config
from sage_kube.lease import LeaseElector
from sage_operator.autoscale.loop import AutoscaleLoop
from sage_operator.core.cache import ObjectCache, OnChange
from sage_operator.core.controller import ControllerLoop
from sage_operator.core.kinds import LLM_ENGINE
from sage_operator.core.store import KubeStore
from sage_operator.engine.adapters import AdapterLoader
from sage_operator.engine.engine_client import EngineClient
from sage_operator.engine.reconciler import EngineReconciler
from sage_operator.finetune.reconciler import FinetuneReconciler
from sage_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    config = load_config()
    return kopf.ConnectionInfo(
        server=config.server,
        ca_data=config.ca_pem,
        insecure=config.insecure_skip_tls_verify,
        token=config.bearer_token(),
        certificate_data=config.client_cert_pem,
        private_key_data=config.client_key_pem,
        default_namespace=config.namespace,
    )


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # We post one Event per phase transition ourselves; kopf's per-handler events would be noise.
    settings.posting.enabled = False
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    operator_settings: OperatorSettings = memo.settings
    kube = KubeClient.from_env(field_manager=names.MANAGED_BY)
    store, cache = KubeStore(kube, operator_settings.namespaces), ObjectCache(kube, operator_settings.namespaces)
    engine_client = EngineClient()
    loader = AdapterLoader(engine_client, operator_settings.engine_port, operator_settings.adapter_retry_max_seconds)
    engines = EngineReconciler(store, cache, loader, operator_settings)
    finetunes = FinetuneReconciler(store, cache, operator_settings)
    autoscaler = AutoscaleLoop(
        store,
        list(operator_settings.gateway_urls),
        operator_settings.autoscale_seconds,
        operator_settings.autoscale_window_seconds,
    )
    cache.watch(LLM_ENGINE, _feeds(autoscaler, cache))
    memo.kube, memo.engine_client, memo.cache = kube, engine_client, cache
    memo.engines, memo.finetunes, memo.autoscaler = engines, finetunes, autoscaler
    # Reconciling starts once the caches are filled, so that the first status written after a
    # (re)start is computed from everything that exists.
    await cache.start()
    watched = ",".join(operator_settings.namespaces) or "all"
    memo.elector = elector = _elector(kube, operator_settings, memo)
    if elector is None:
        _act(memo)
        log.info("sage-operator started (namespaces: %s)", watched)
    else:
        elector.start()
        memo.leading = asyncio.create_task(_act_once_leading(elector, memo), name="sage-operator-leading")
        log.info(
            "sage-operator started (namespaces: %s) as %s; it reconciles while it holds Lease %s/%s",
            watched,
            elector.identity,
            elector.namespace,
            elector.name,
        )
    if operator_settings.admin_key is None:
        log.warning(
            "SAGE_OPERATOR_ADMIN_KEY is not set: engines accept adapter changes from any caller that reaches them"
        )
    if operator_settings.engine_peers is None:
        log.warning("SAGE_OPERATOR_ENGINE_PEERS is not set: engine pods get no NetworkPolicy")


def _feeds(autoscaler: AutoscaleLoop, cache: ObjectCache) -> OnChange:
    """Hands the autoscaler every change of an engine, as the cache holds it (None: deleted)."""

    def changed(obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        current = cache.get(LLM_ENGINE, namespace, name)
        autoscaler.track(namespace, name, current, deleted=current is None)

    return changed


def _elector(kube: KubeClient, settings: OperatorSettings, memo: kopf.Memo) -> LeaseElector | None:
    """With a leader Lease, one replica acts and the others stand by; losing it ends the process
    (through kopf's stop flag), which comes back as a standby."""
    if not settings.leader_lease:
        return None
    namespace, name = settings.leader_lease.split("/")

    def lost() -> None:
        memo.lost_leadership = True
        memo.stop_flag.set()

    return LeaseElector(kube, namespace, name, settings.pod_name, duration=settings.leader_lease_seconds, on_lost=lost)


def _act(memo: kopf.Memo) -> None:
    memo.engines.loop.start()  # each begins with a full resync: it catches up on what it missed
    memo.finetunes.loop.start()
    memo.autoscaler.start()


async def _act_once_leading(elector: LeaseElector, memo: kopf.Memo) -> None:
    await elector.until_leading()
    log.info("sage-operator leads: reconciling")
    _act(memo)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if (leading := memo.get("leading")) is not None:
        leading.cancel()
    await memo.autoscaler.stop()
    await memo.engines.loop.stop()
    await memo.finetunes.loop.stop()
    await memo.cache.stop()
    if memo.elector is not None:
        await memo.elector.stop(release=not memo.get("lost_leadership"))
    await memo.engine_client.aclose()
    await memo.kube.aclose()


def _queue(loop: ControllerLoop, namespace: str | None, name: str, meta: Mapping[str, Any], kind: str | None) -> None:
    if namespace:
        loop.changed(namespace, name, meta.get("resourceVersion"), deleted=kind == "DELETED")


# The event handler is a coroutine: kopf runs a plain function in a thread pool, and the queue it
# feeds belongs to the event loop (and a thread hop per event costs more than the handler).
@kopf.on.event(names.GROUP, names.VERSION, names.FINETUNE_PLURAL)
async def finetunejob_changed(
    namespace: str | None, name: str, meta: Mapping[str, Any], type: str | None, memo: Any, **_: Any
) -> None:
    _queue(memo.finetunes.loop, namespace, name, meta, type)
