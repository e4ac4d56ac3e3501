"""The pytest plugin every test run loads (`-p sage_testing.plugin` in pyproject.toml).

Session fixtures start real things once per run and tear them down even when a test fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_testing.envtest import REPO_ROOT, ControlPlane, ControlPlaneError, locate_binaries
from sage_testing.kubectl import Kubectl
from sage_testing.podnet import PodNetwork, PodNetworkError
from sage_testing.prereq import missing

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
        kubectl("apply", "-f", str(REPO_ROOT / "crds"))
        kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd", "llmengines.sage.ai", "finetunejobs.sage.ai"
        )
        yield plane


@pytest.fixture(scope="session")
def pod_network() -> Iterator[PodNetwork]:
    """Stand-in pods with real, non-loopback addresses (see sage_testing.podnet)."""
    try:
        PodNetwork.check()
    except PodNetworkError as error:
        missing(str(error))
    with PodNetwork() as network:
        yield network


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()) or "kubectl" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
