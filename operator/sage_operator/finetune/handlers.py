"""The thin kopf layer for FinetuneJobs: every change of a FinetuneJob or of its Job queues a
reconcile; a resync timer catches what a missed event would leave behind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from sage_api import names
from sage_kube import KubeClient
from sage_operator.finetune.reconciler import FinetuneReconciler
from sage_operator.finetune.store import FinetuneStore
from sage_operator.kube_io import FIELD_MANAGER
from sage_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


async def _resync_forever(reconciler: FinetuneReconciler, every: float) -> None:
    while True:
        try:
            await reconciler.resync()
        except Exception:  # the safety net must not die of one failed listing
            log.exception("FinetuneJob resync failed")
        await asyncio.sleep(every)


@kopf.on.startup()
async def start_finetune(memo: kopf.Memo, **_: Any) -> None:
    settings = OperatorSettings()
    kube = KubeClient.from_env(field_manager=FIELD_MANAGER)
    reconciler = FinetuneReconciler(FinetuneStore(kube), image=settings.finetune_image, namespaces=settings.namespaces)
    reconciler.start()
    memo.finetune_kube, memo.finetune = kube, reconciler
    memo.finetune_resync = asyncio.create_task(_resync_forever(reconciler, settings.resync_seconds))


@kopf.on.cleanup()
async def stop_finetune(memo: kopf.Memo, **_: Any) -> None:
    memo.finetune_resync.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await memo.finetune_resync
    await memo.finetune.stop()
    await memo.finetune_kube.aclose()


@kopf.on.event(names.GROUP, names.VERSION, names.FINETUNE_PLURAL)
def finetunejob_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    if namespace:
        memo.finetune.enqueue(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={names.LABEL_FINETUNEJOB: kopf.PRESENT})
def training_job_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
    if namespace and labels.get(names.LABEL_FINETUNEJOB):
        memo.finetune.enqueue(namespace, labels[names.LABEL_FINETUNEJOB])
