"""The thin kopf layer: log in with the same credentials as sage_kube, tune kopf, build the
controller core once from the settings `__main__` put in the memo, and turn every watch event of
an LLMEngine or a FinetuneJob into a queued reconcile. Children are watched by the core's
label-selected cache, not by kopf (which would watch every pod and Job of the cluster)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from sage_api import names
from sage_kube import KubeClient, load_config
from sage_operator.autoscale.loop import AutoscaleLoop
from sage_operator.core.cache import ObjectCache
from sage_operator.core.controller import ControllerLoop
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
    # Reconciling starts once the caches are filled, so that the first status written after a
    # (re)start is computed from everything that exists.
    await cache.start()
    engines.loop.start()
    finetunes.loop.start()
    autoscaler = AutoscaleLoop(
        store,
        list(operator_settings.gateway_urls),
        operator_settings.autoscale_seconds,
        operator_settings.autoscale_window_seconds,
    )
    autoscaler.start()
    memo.kube, memo.engine_client, memo.cache = kube, engine_client, cache
    memo.engines, memo.finetunes, memo.autoscaler = engines, finetunes, autoscaler
    log.info("sage-operator started (namespaces: %s)", ",".join(operator_settings.namespaces) or "all")
    if operator_settings.admin_key is None:
        log.warning(
            "SAGE_OPERATOR_ADMIN_KEY is not set: engines accept adapter changes from any caller that reaches them"
        )
    if operator_settings.engine_peers is None:
        log.warning("SAGE_OPERATOR_ENGINE_PEERS is not set: engine pods get no NetworkPolicy")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.autoscaler.stop()
    await memo.engines.loop.stop()
    await memo.finetunes.loop.stop()
    await memo.cache.stop()
    await memo.engine_client.aclose()
    await memo.kube.aclose()


def _queue(loop: ControllerLoop, namespace: str | None, name: str, meta: Mapping[str, Any], kind: str | None) -> None:
    if namespace:
        loop.changed(namespace, name, meta.get("resourceVersion"), deleted=kind == "DELETED")


@kopf.on.event(names.GROUP, names.VERSION, names.ENGINE_PLURAL)
def engine_changed(
    *,
    namespace: str | None,
    name: str,
    meta: Mapping[str, Any],
    type: str | None,
    body: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> None:
    _queue(memo.engines.loop, namespace, name, meta, type)
    if namespace:
        memo.autoscaler.track(namespace, name, body, deleted=type == "DELETED")


@kopf.on.event(names.GROUP, names.VERSION, names.FINETUNE_PLURAL)
def finetunejob_changed(
    namespace: str | None, name: str, meta: Mapping[str, Any], type: str | None, memo: Any, **_: Any
) -> None:
    _queue(memo.finetunes.loop, namespace, name, meta, type)
