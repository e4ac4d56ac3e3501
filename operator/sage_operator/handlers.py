"""The thin kopf layer: log in with the same credentials as sage_kube, tune kopf, and turn every
LLMEngine watch event into a queued reconcile. (The children are watched by the reconciler's own
informers, with a server-side label selector: kopf would watch every pod of the cluster.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from sage_api import names
from sage_kube import KubeClient, load_config
from sage_operator.adapters import AdapterLoader
from sage_operator.engine_client import EngineClient
from sage_operator.kube_io import FIELD_MANAGER, EngineStore
from sage_operator.reconciler import Reconciler
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
    operator_settings = OperatorSettings()
    kube = KubeClient.from_env(field_manager=FIELD_MANAGER)
    engines = EngineClient()
    loader = AdapterLoader(engines, operator_settings.engine_port, operator_settings.adapter_retry_max_seconds)
    reconciler = Reconciler(EngineStore(kube), loader, operator_settings)
    await reconciler.start()
    memo.kube, memo.engines, memo.reconciler = kube, engines, reconciler
    log.info("sage-operator started (namespaces: %s)", ",".join(operator_settings.namespaces) or "all")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.reconciler.stop()
    await memo.engines.aclose()
    await memo.kube.aclose()


@kopf.on.event(names.GROUP, names.VERSION, names.ENGINE_PLURAL)
def engine_changed(
    namespace: str | None, name: str, meta: Mapping[str, Any], type: str | None, memo: Any, **_: Any
) -> None:
    if namespace:
        memo.reconciler.engine_changed(namespace, name, meta.get("resourceVersion"), deleted=type == "DELETED")
