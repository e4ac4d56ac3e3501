"""`sage llm ...` on the real node, run as a user runs it: the installed `sage` script against the
cluster `helm install sage` set up, with KUBECONFIG pointing at it. `engine start` waits for a
real pod to be Ready, `logs` reads it through the API server and the kubelet, and `stop` and
`--delete` take it away again."""

from __future__ import annotations

import os

import pytest

from sage_harness.kubectl import Kubectl
from sage_harness.node import Node
from sage_harness.sage_script import run_sage
from sage_harness.waiting import wait_until
from sage_testing.engine_objects import get
from sage_testing.node_fixtures import SageRelease


@pytest.fixture
def env(node: Node) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("SAGE_")}
    return {**base, "KUBECONFIG": str(node.plane.kubeconfig)}


def sage(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, str, str]:
    result = run_sage(env, *args, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def test_an_engine_started_from_the_cli_runs_as_a_pod_and_logs(
    sage_release: SageRelease, env: dict[str, str], node_kubectl: Kubectl, node_namespace: str
) -> None:
    code, out, err = sage(env, "llm", "engine", "start", "deterministic", "--backend", "deterministic",
                          "--name", "echo", "--cluster", "-n", node_namespace, "--timeout", "240",
                          timeout=300)  # fmt: skip
    assert code == 0, out + err
    assert f"namespace {node_namespace}" in err
    assert "engine echo is ready (1/1 replicas)" in err

    code, out, err = sage(env, "llm", "engine", "list", "-n", node_namespace)
    assert code == 0, err
    assert out.splitlines()[1].split()[:6] == ["echo", "llm", "deterministic", "deterministic", "1/1", "Ready"]

    code, out, err = sage(env, "llm", "engine", "logs", "echo", "-n", node_namespace)
    assert code == 0, err
    assert "echo" in out
    assert out.strip(), "the pod's log is empty"

    code, out, err = sage(env, "llm", "engine", "stop", "echo", "-n", node_namespace)
    assert code == 0, err
    wait_until(
        lambda: not node_kubectl.json("get", "pods", "-n", node_namespace, "-l", "sage.ai/engine=echo")["items"],
        "the engine's pod to go",
        timeout=120,
    )
    code, out, err = sage(env, "llm", "engine", "stop", "echo", "--delete", "-n", node_namespace)
    assert code == 0, err
    assert get(node_kubectl, node_namespace, "llmengine", "echo") is None
