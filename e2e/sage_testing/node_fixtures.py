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
from dataclasses import dataclass
from pathlib import Path

import pytest

from sage_harness.cluster_checks import namespace_report
from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl, apply_crds
from sage_harness.node import Node, NodeError, check_prerequisites, host_address
from sage_harness.node_images import LocalRegistry, NodeImages, record
from sage_harness.readme import section_commands
from sage_harness.repo import REPO_ROOT
from sage_harness.user_shell import UserShell
from sage_harness.waiting import wait_until
from sage_testing.prereq import missing

NODE_FIXTURES = {"node", "node_images", "node_kubectl", "node_namespace", "node_control_plane", "sage_release"}
# Every namespace of the node tier enforces the `restricted` Pod Security Standard, as
# security-conscious clusters do: each pod SAGE creates there must be admitted under it.
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
# The images `make images` builds and the chart and operator run.
SHIPPED_IMAGES = ("operator", "gateway", "engine", "finetune")
_namespace_counter = itertools.count(1)


@dataclass(frozen=True)
class SageRelease:
    """SAGE installed on the node by the README's `helm install` line, with the images built here."""

    namespace: str
    install_command: str
    images: dict[str, str]
    shell: UserShell


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
    node_kubectl("label", "namespace", name, RESTRICTED)
    # The ServiceAccount admission plugin refuses pods until the namespace's default account exists.
    wait_until(
        lambda: node_kubectl.run("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        f"the default ServiceAccount of {name}",
        30,
        interval=0.2,
    )
    yield name
    node_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def sage_release(node: Node, node_images: NodeImages, node_kubectl: Kubectl) -> SageRelease:
    """`helm install` exactly as README.md's "Install on a cluster" section types it (its namespace
    created first with the restricted label), both Deployments rolled out. One release for the
    session: two cluster-wide operators would reconcile the same engines."""
    images = dict(zip(SHIPPED_IMAGES, node_images.ensure(*SHIPPED_IMAGES), strict=True))
    (install,) = [line for line in section_commands("Install on a cluster") if line.startswith("helm install")]
    namespace = install.split(" -n ", 1)[1].split()[0]
    node_kubectl("create", "namespace", namespace)
    node_kubectl("label", "namespace", namespace, RESTRICTED)
    shell = UserShell(node.binaries, node.plane.kubeconfig)
    started = time.monotonic()
    installed = shell.run(install)
    if installed.returncode != 0:
        pytest.fail(f"{install}\nfailed ({installed.returncode}):\n{installed.stdout}\n{installed.stderr}")
    for deployment in ("sage-operator", "sage-gateway"):
        rollout = node_kubectl.run(
            "rollout", "status", "-n", namespace, f"deployment/{deployment}", "--timeout=240s", check=False
        )
        if rollout.returncode != 0:
            logs = node_kubectl.run("logs", "-n", namespace, f"deployment/{deployment}", "--tail=40", check=False)
            report = namespace_report(node_kubectl, namespace)
            pytest.fail(f"{deployment} not rolled out:\n{rollout.stderr}\n{report}\n{logs.stdout}")
    record("helm-ready", time.monotonic() - started, command=install)
    return SageRelease(namespace, install, images, shell)
