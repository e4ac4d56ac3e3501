"""Session fixtures of the node tier: a control plane of its own with a real node, and the repo's
images built here and on that node (sage_harness.node, sage_harness.node_images).

The node tier's control plane is not the integration tier's `control_plane`: there, tests play the
kubelet themselves (sage_testing.kubelet), which a real kubelet and scheduler would contradict.
A missing prerequisite (not root, a package or binary absent) skips locally and fails in CI.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl, apply_crds
from sage_harness.node import Node, NodeError, check_prerequisites, host_address
from sage_harness.node_images import LocalRegistry, NodeImages
from sage_harness.repo import REPO_ROOT
from sage_testing.prereq import missing

NODE_FIXTURES = {"node", "node_images", "node_kubectl", "node_namespace", "node_control_plane"}
_namespace_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "node: runs pods on a real kubelet + containerd with the images built here (e2e/node/)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if NODE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.integration)  # a real API server too: `make unit` leaves it out


@pytest.fixture(scope="session")
def node_prerequisites(kube_binaries: Path) -> Path:
    """The binaries folder, once everything a node needs is known to be here."""
    try:
        check_prerequisites(kube_binaries)
        host_address()
    except NodeError as error:
        missing(str(error))
    return kube_binaries


@pytest.fixture(scope="session")
def node_control_plane(node_prerequisites: Path) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager prepared for a kubelet, CRDs applied."""
    with ControlPlane(node_prerequisites, for_nodes=True, advertise_address=host_address()) as plane:
        kubectl = Kubectl(node_prerequisites / "kubectl", plane.kubeconfig)
        apply_crds(kubectl, REPO_ROOT / "crds")
        yield plane


@pytest.fixture(scope="session")
def local_registry(node_prerequisites: Path) -> Iterator[LocalRegistry]:
    with LocalRegistry() as registry:
        yield registry


@pytest.fixture(scope="session")
def node(node_control_plane: ControlPlane, node_prerequisites: Path, local_registry: LocalRegistry) -> Iterator[Node]:
    """A Ready node (kubelet + containerd + runc + CNI, kube-scheduler, kube-proxy)."""
    with Node(node_control_plane, node_prerequisites, local_registry) as running:
        yield running


@pytest.fixture(scope="session")
def node_images(node: Node, local_registry: LocalRegistry) -> NodeImages:
    """`node_images.ensure("gateway", ...)` -> pod references of images built here, on the node."""
    return NodeImages(node, local_registry)


@pytest.fixture(scope="session")
def node_kubectl(node: Node) -> Kubectl:
    return node.kubectl


@pytest.fixture
def node_namespace(node_kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the node's control plane, deleted afterwards (without waiting)."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"n{next(_namespace_counter)}-{base}".rstrip("-")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)[:63].rstrip("-")
    node_kubectl("create", "namespace", name)
    # The ServiceAccount admission plugin refuses pods until the namespace's default account exists.
    deadline = time.monotonic() + 30
    while node_kubectl.run("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"no default ServiceAccount in {name} after 30 s")
        time.sleep(0.2)
    yield name
    node_kubectl.run("delete", "namespace", name, "--wait=false", check=False)
