"""Playing the kubelet: no kubelet runs beside the test API server, so tests report pod status
the way one would (the pods themselves are real objects made by the real controllers)."""

from __future__ import annotations

import json
from typing import Any

from sage_harness.kubectl import Kubectl

_STARTED = "2026-01-01T00:00:00Z"


def report_pod_ready(
    kubectl: Kubectl,
    namespace: str,
    pod: str,
    *,
    container: str,
    ip: str = "127.0.0.1",
    ready: bool = True,
    restarts: int = 0,
    containers: list[dict[str, Any]] | None = None,
) -> None:
    """Scheduled and running at `ip`; ready or not; `containers` replaces the one container's
    status when a test needs another (waiting, crashed)."""
    condition = {"lastTransitionTime": _STARTED}
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True", **condition},
            *({"type": kind, "status": str(ready), **condition} for kind in ("Ready", "ContainersReady")),
        ],
        "containerStatuses": containers
        or [
            {
                "name": container,
                "image": "sage/test",
                "imageID": "",
                "ready": ready,
                "restartCount": restarts,
                "started": True,
                "state": {"running": {"startedAt": _STARTED}},
            }
        ],
    }
    _patch_status(kubectl, namespace, pod, status)


def report_pod_exited(kubectl: Kubectl, namespace: str, pod: str, *, container: str, exit_code: int) -> None:
    """The (only) container exited with `exit_code`: Succeeded or Failed."""
    state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}}
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {"name": container, "image": "sage/test", "imageID": "", "ready": False, "restartCount": 0, "state": state}
        ],
    }
    _patch_status(kubectl, namespace, pod, status)


def live_pods(kubectl: Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods matching `selector` that are not being deleted."""
    items: list[dict[str, Any]] = kubectl.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return [pod for pod in items if not pod["metadata"].get("deletionTimestamp")]


def _patch_status(kubectl: Kubectl, namespace: str, pod: str, status: dict[str, Any]) -> None:
    patch = json.dumps({"status": status})
    kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)
