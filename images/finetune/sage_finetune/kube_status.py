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
import os
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sage_finetune.kube_paths import SERVICE_ACCOUNT_DIR
from sage_finetune.progress import ProgressEvent, ProgressLine

log = logging.getLogger(__name__)

API_GROUP_VERSION = "sage.ai/v1alpha1"
_URGENT = {
    ProgressEvent.STOPPED,
    ProgressEvent.COMPLETED,
    ProgressEvent.FAILED,
    ProgressEvent.CHECKPOINT,
}


@dataclass(frozen=True)
class InClusterCredentials:
    """How a pod reaches its API server: the service address from the kubelet-set environment,
    the mounted ServiceAccount token and CA."""

    server: str
    token_file: Path
    ca_file: Path

    @classmethod
    def from_environment(cls, service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> InClusterCredentials | None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT")
        token, ca = service_account_dir / "token", service_account_dir / "ca.crt"
        if not host or not port or not token.is_file() or not ca.is_file():
            return None
        host = f"[{host}]" if ":" in host else host
        return cls(server=f"https://{host}:{port}", token_file=token, ca_file=ca)


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
        credentials: InClusterCredentials,
        target: str,
        interval_seconds: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        namespace, name = target.split("/", 1)
        self._path = f"/apis/{API_GROUP_VERSION}/namespaces/{namespace}/finetunejobs/{name}/status"
        self._credentials = credentials
        self._interval = interval_seconds
        self._client = httpx.Client(
            base_url=credentials.server,
            verify=ssl.create_default_context(cafile=str(credentials.ca_file)),
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
            token = self._credentials.token_file.read_text().strip()
            response = self._client.patch(
                self._path,
                content=json.dumps(status_patch(line)),
                headers={
                    "Authorization": f"Bearer {token}",
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
