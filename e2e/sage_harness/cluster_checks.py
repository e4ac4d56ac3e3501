"""What node tests wait for and report: a custom resource's status reaching what a test expects
(with the namespace's pods and events when it never does), and `kubectl port-forward` to a
Service as the README has users reach the gateway."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sage_harness.kubectl import Kubectl
from sage_harness.net import free_port
from sage_harness.waiting import WaitTimeout, wait_until

Status = dict[str, Any]


def namespace_report(kubectl: Kubectl, namespace: str) -> str:
    """Pods (wide) and the latest events of `namespace`: what a failed wait prints."""
    pods = kubectl.run("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = kubectl.run("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    return f"pods:\n{pods}\nevents (latest):\n{events[-3000:]}"


def status_of(kubectl: Kubectl, resource: str, namespace: str) -> Status:
    """The status of `resource` (`kind/name`), {} while it does not exist."""
    found = kubectl.run("get", resource, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    status: Status = json.loads(found.stdout).get("status") or {}
    return status


def wait_status(
    kubectl: Kubectl,
    resource: str,
    namespace: str,
    holds: Callable[[Status], bool],
    what: str,
    *,
    timeout: float = 180,
) -> Status:
    """Polls the status of `resource` (`kind/name`) until `holds(status)`; on timeout the failure
    carries the last status and the namespace's pods and events."""

    def holding() -> Status | None:
        status = status_of(kubectl, resource, namespace)
        return status if status and holds(status) else None

    try:
        return wait_until(
            holding,
            f"{resource} in {namespace}: {what}",
            timeout,
            interval=0.5,
        )
    except WaitTimeout as timeout_error:
        last = status_of(kubectl, resource, namespace)
        msg = f"{timeout_error}\nstatus: {last}\n{namespace_report(kubectl, namespace)}"
        raise WaitTimeout(msg) from None


def wait_phase(kubectl: Kubectl, resource: str, namespace: str, phase: str, *, timeout: float = 180) -> Status:
    return wait_status(
        kubectl, resource, namespace, lambda s: s.get("phase") == phase, f"phase {phase}", timeout=timeout
    )


def condition(status: Status, kind: str) -> Status:
    """The condition of type `kind` in a status ({} when absent)."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def port_forward(kubectl: Kubectl, namespace: str, target: str, port: int) -> Iterator[str]:
    """`kubectl port-forward -n NAMESPACE TARGET LOCAL:PORT` on a free local port; yields the
    local base URL (http://127.0.0.1:LOCAL) once it listens."""
    local = free_port()
    argv = [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "port-forward", "-n", namespace]
    forward = subprocess.Popen(
        [*argv, target, f"{local}:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(
            lambda: forward.poll() is not None or _listening(local),  # listening, or gone
            f"kubectl port-forward {target} to listen",
            30,
        )
        if forward.poll() is not None:
            msg = f"kubectl port-forward {target} exited: {forward.communicate()[1]}"
            raise AssertionError(msg)
        yield f"http://127.0.0.1:{local}"
    finally:
        forward.terminate()
        forward.communicate(timeout=10)
