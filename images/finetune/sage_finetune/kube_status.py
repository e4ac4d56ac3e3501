"""Patching the FinetuneJob's `status.progress` from inside its pod.

The runner's ServiceAccount may only get and patch `finetunejobs/status` (the operator renders it
so); nothing else in the cluster is reachable with it. The client is deliberately small: the
in-cluster token (re-read on every request, since projected tokens rotate), the cluster CA, one
JSON merge patch to the status subresource. Patches are sent from a background thread that always
sends the newest line, at most once per interval, so a slow or unreachable API server never slows
training; terminal events (stopped, completed, failed) are sent before the runner exits.
A failed patch is logged, never fatal: the progress is also in the pod log and progress.jsonl.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from sage_api import names
from sage_finetune.progress import ProgressEvent, ProgressLine
from sage_kube.config import ConfigError, KubeConfig, in_cluster
from sage_kube.paths import resource_path

log = logging.getLogger(__name__)

_URGENT = {
    ProgressEvent.STOPPED,
    ProgressEvent.COMPLETED,
    ProgressEvent.FAILED,
    ProgressEvent.CHECKPOINT,
}


def in_cluster_config(service_account_dir: Path) -> KubeConfig | None:
    """How this pod reaches its API server (sage_kube's in-cluster config), or None outside a pod."""
    try:
        return in_cluster(service_account_dir)
    except ConfigError:
        return None


def status_patch(line: ProgressLine) -> dict[str, Any]:
    """The merge patch for one progress line: status.progress, and lastCheckpoint when one was
    written. Other status fields (phase, conditions, ...) belong to the operator: not sent."""
    status: dict[str, Any] = {"progress": line.status_progress().to_wire()}
    if line.checkpoint:
        status["lastCheckpoint"] = line.checkpoint
    return {"status": status}


class KubeStatusSink:
    """A ProgressSink that patches `<namespace>/<name>`'s FinetuneJob status."""

    def __init__(
        self,
        config: KubeConfig,
        target: str,
        interval_seconds: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        namespace, name = target.split("/", 1)
        self._path = resource_path(names.API_VERSION, names.FINETUNE_PLURAL, namespace, name, "status")
        self._config = config
        self._interval = interval_seconds
        self._client = httpx.Client(
            base_url=config.server,
            verify=config.ssl_context(),
            timeout=10,
            transport=transport,
        )
        self._pending: ProgressLine | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="status-patcher", daemon=True)
        self._thread.start()

    def publish(self, line: ProgressLine) -> None:
        with self._wake:
            self._pending = line
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self._client.close()

    def _due(self, last_sent: float) -> bool:
        """Whether the pending line goes out now: urgent events and the final flush at once,
        anything else once the interval since the last patch has passed."""
        pending = self._pending
        if pending is None or self._closing or pending.event in _URGENT:
            return True
        return time.monotonic() - last_sent >= self._interval

    def _run(self) -> None:
        last_sent = -self._interval
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                while not self._due(last_sent):
                    self._wake.wait(timeout=max(0.0, self._interval - (time.monotonic() - last_sent)))
                line, self._pending = self._pending, None
                closing = self._closing
            if line is not None:
                self._send(line)
                last_sent = time.monotonic()
            elif closing:
                return

    def _send(self, line: ProgressLine) -> None:
        try:
            response = self._client.patch(
                self._path,
                content=json.dumps(status_patch(line)),
                headers={
                    "Authorization": f"Bearer {self._config.bearer_token()}",
                    "Content-Type": "application/merge-patch+json",
                },
            )
            response.raise_for_status()
            self._failures = 0
        except (httpx.HTTPError, OSError) as error:
            self._failures += 1
            detail = error.response.text[:300] if isinstance(error, httpx.HTTPStatusError) else str(error)
            if self._failures == 1 or self._failures % 20 == 0:
                log.warning("patching %s failed (%d in a row): %s", self._path, self._failures, detail)
