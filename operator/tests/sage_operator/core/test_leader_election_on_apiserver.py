"""Operator replicas on one leader Lease, as processes against the real API server: only the
holder reconciles; when it stops, it hands the Lease back and a standby reconciles at once; when
it is killed, a standby takes over once the Lease has run out. A control plane of its own: the
session's operator would reconcile these engines too."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.waiting import wait_until
from sage_testing.plugin import operator_env, own_control_plane

NAMESPACE = "lead"
LEASE = "sage-operator-leader"
LEASE_SECONDS = 3


@pytest.fixture
def plane(kube_binaries: Path) -> Iterator[tuple[ControlPlane, Kubectl]]:
    with own_control_plane(kube_binaries, NAMESPACE) as made:
        yield made


def engine(name: str) -> str:
    return (
        f"apiVersion: sage.ai/v1alpha1\nkind: LLMEngine\nmetadata: {{name: {name}}}\n"
        "spec: {model: deterministic, backend: deterministic}\n"
    )


def holder(kubectl: Kubectl) -> str | None:
    found = kubectl.run("get", "lease", LEASE, "-n", NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}", check=False)
    return found.stdout.strip() or None if found.returncode == 0 else None


def deployed(kubectl: Kubectl, name: str) -> bool:
    return kubectl.run("get", "deployment", name, "-n", NAMESPACE, check=False).returncode == 0


def test_only_the_lease_holder_reconciles_and_a_standby_takes_over(
    plane: tuple[ControlPlane, Kubectl], engine_port: int, tmp_path: Path
) -> None:
    control_plane, kubectl = plane

    def replica(name: str) -> OperatorProcess:
        env = operator_env(engine_port) | {
            "SAGE_OPERATOR_LEADER_LEASE": f"{NAMESPACE}/{LEASE}",
            "SAGE_OPERATOR_LEADER_LEASE_SECONDS": str(LEASE_SECONDS),
            "SAGE_OPERATOR_POD_NAME": name,
        }
        return OperatorProcess(control_plane.kubeconfig, tmp_path / f"{name}.log", env=env)

    a, b, c = replica("a"), replica("b"), replica("c")
    with contextlib.ExitStack() as stack:
        for process in (a, b, c):
            stack.callback(process.stop)
        a.start()
        wait_until(lambda: holder(kubectl) == "a", "a holding the Lease")
        b.start()
        kubectl.apply(engine("one"), NAMESPACE)
        wait_until(lambda: deployed(kubectl, "one"), f"a reconciling\n{a.log_tail(20)}")
        assert holder(kubectl) == "a"
        assert "leads" not in b.log(since_launch=True), b.log_tail(20)

        a.stop()  # a rollout: a hands the Lease back on its way out, b leads at once
        assert a.wait_exit(0) == 0
        wait_until(lambda: holder(kubectl) == "b", f"b leading\n{b.log_tail(20)}", timeout=LEASE_SECONDS)
        kubectl.apply(engine("two"), NAMESPACE)
        wait_until(lambda: deployed(kubectl, "two"), f"b reconciling\n{b.log_tail(20)}")

        c.start()
        b.signal(signal.SIGKILL)  # b dies holding the Lease: c waits for it to run out
        kubectl.apply(engine("three"), NAMESPACE)
        wait_until(lambda: holder(kubectl) == "c", f"c leading\n{c.log_tail(20)}", timeout=LEASE_SECONDS * 4)
        wait_until(lambda: deployed(kubectl, "three"), f"c reconciling\n{c.log_tail(20)}")
        assert "sage-operator leads: reconciling" in c.log(since_launch=True)
