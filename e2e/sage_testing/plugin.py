"""The pytest plugin every test run loads (`-p sage_testing.plugin` in pyproject.toml).

Session fixtures start real things once per run and tear them down even when a test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sage_harness.controlplane import ControlPlane, ControlPlaneError, locate_binaries
from sage_harness.kubectl import Kubectl, apply_crds
from sage_harness.net import free_port
from sage_harness.operator_process import OperatorProcess
from sage_harness.podnet import PodNetwork, PodNetworkError
from sage_harness.repo import REPO_ROOT
from sage_testing.prereq import missing

# What the chart gives the operator (SAGE_OPERATOR_ENGINE_PEERS): the release's gateway pods.
ENGINE_PEERS = [
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "sage-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}},
    }
]

pytest_plugins = ["sage_testing.engine_fixtures", "sage_testing.node_fixtures"]

_namespace_counter = itertools.count(1)


@pytest.fixture(scope="session")
def kube_binaries() -> Path:
    try:
        return locate_binaries()
    except ControlPlaneError as error:
        missing(str(error))


@pytest.fixture(scope="session")
def control_plane(kube_binaries: Path) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager with the CRDs from crds/ applied."""
    with ControlPlane(kube_binaries) as plane:
        kubectl = Kubectl(kube_binaries / "kubectl", plane.kubeconfig)
        apply_crds(kubectl, REPO_ROOT / "crds")
        yield plane


@contextlib.contextmanager
def own_control_plane(kube_binaries: Path, namespace: str) -> Iterator[tuple[ControlPlane, Kubectl]]:
    """A control plane apart from the session's, with the CRDs and `namespace`: for tests that stop
    its API server, or whose operator must be the only one."""
    with ControlPlane(kube_binaries) as plane:
        kubectl = Kubectl(kube_binaries / "kubectl", plane.kubeconfig)
        apply_crds(kubectl, REPO_ROOT / "crds")
        kubectl("create", "namespace", namespace)
        yield plane, kubectl


@pytest.fixture(scope="session")
def pod_network() -> Iterator[PodNetwork]:
    """Stand-in pods with real, non-loopback addresses (see sage_harness.podnet)."""
    try:
        PodNetwork.check()
    except PodNetworkError as error:
        missing(str(error))
    with PodNetwork() as network:
        yield network


@pytest.fixture(scope="session")
def engine_port() -> int:
    """Where the operator reaches the 'container' of every ready test pod: a loopback port on which
    tests start a real engine when a pod must answer (pods report 127.0.0.1 as their IP)."""
    return free_port()


def operator_env(engine_port: int) -> dict[str, str]:
    """The settings every test operator runs with (see `operator`)."""
    return {
        "SAGE_OPERATOR_ENGINE_PORT": str(engine_port),
        "SAGE_OPERATOR_RESYNC_SECONDS": "2",
        "SAGE_OPERATOR_FINETUNE_IMAGE": "sage/finetune:test",
        "SAGE_OPERATOR_ENGINE_PEERS": json.dumps(ENGINE_PEERS),
        "SAGE_OPERATOR_ADMIN_KEY": "a-test-key-for-adapter-credentials",
    }


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, engine_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The one operator process every API-server test module shares (reconciling every namespace).
    A test that restarts it leaves it running again."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with OperatorProcess(control_plane.kubeconfig, log, env=operator_env(engine_port)) as process:
        yield process
        print(process.log_tail(200))


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane, kube_binaries: Path) -> Kubectl:
    return Kubectl(kube_binaries / "kubectl", control_plane.kubeconfig)


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"t{next(_namespace_counter)}-{base}".rstrip("-")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)[:63].rstrip("-")
    kubectl("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def extra_namespace(kubectl: Kubectl, namespace: str) -> Iterator[Callable[[str], str]]:
    """Makes further namespaces beside the test's own (`<namespace>-<suffix>`), deleted afterwards."""
    made: list[str] = []

    def make(suffix: str) -> str:
        name = f"{namespace[: 62 - len(suffix)]}-{suffix}"
        kubectl("create", "namespace", name)
        made.append(name)
        return name

    yield make
    for name in made:
        kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()) or "kubectl" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
