"""What the node writes for containerd, CNI, the kubelet and kube-proxy carries every setting
design/NODE.md found necessary (each was a real failure first). Pure: nothing is started."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

import pytest
import yaml

from sage_harness.controlplane import ControlPlane
from sage_harness.node import BENCHMARK_RANGE, CNI_BIN_DIR, Node, NodeError, check_prerequisites
from sage_harness.node_images import LocalRegistry
from sage_harness.podnet import PodNetwork


@pytest.fixture
def node(tmp_path: Path) -> Node:
    plane = ControlPlane(tmp_path / "bin", for_nodes=True, advertise_address="192.0.2.10", workdir=tmp_path / "plane")
    registry = LocalRegistry(storage=tmp_path / "registry", port=5999, workdir=tmp_path / "registry-work")
    return Node(plane, tmp_path / "bin", registry, sandbox_image="docker.io/sage-base/pause:k", workdir=tmp_path / "n")


def test_containerd_settings(node: Node) -> None:
    node.workdir.mkdir()
    config = tomllib.loads(node._write_containerd_config(node._write_cni()).read_text())
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
    assert cri["sandbox_image"] == "docker.io/sage-base/pause:k"
    assert cri["cni"]["bin_dir"] == str(CNI_BIN_DIR) == "/usr/lib/cni"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert config["grpc"]["address"] == str(node.socket)  # never the system containerd's socket
    hosts = (Path(cri["registry"]["config_path"]) / "docker.io" / "hosts.toml").read_text()
    assert tomllib.loads(hosts) == {"host": {"http://127.0.0.1:5999": {"capabilities": ["pull", "resolve"]}}}


def test_cni_is_a_bridge_with_host_local_addresses_in_the_benchmark_range(node: Node) -> None:
    node.workdir.mkdir()
    conflist = json.loads((node._write_cni() / "10-sage.conflist").read_text())
    bridge = conflist["plugins"][0]
    assert (bridge["type"], bridge["ipam"]["type"]) == ("bridge", "host-local")
    (subnet,) = (ipaddress.IPv4Network(r[0]["subnet"]) for r in bridge["ipam"]["ranges"])
    assert subnet.subnet_of(BENCHMARK_RANGE)
    assert subnet != PodNetwork()._subnet  # both can run in one session


def test_kubelet_settings(node: Node) -> None:
    node.workdir.mkdir()
    config = yaml.safe_load(node._write_kubelet_config().read_text())
    assert config["failCgroupV1"] is False  # cgroup v1 host
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failSwapOn"] is False
    assert config["localStorageCapacityIsolation"] is False
    assert config["containerRuntimeEndpoint"] == f"unix://{node.socket}"
    assert all(value == "0%" for value in config["evictionHard"].values())  # never fires
    assert config["authentication"]["x509"]["clientCAFile"].endswith("ca.crt")  # logs/exec/port-forward
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["imageGCHighThresholdPercent"] == 100  # the node keeps the images it was given


def test_the_control_plane_is_ready_for_nodes(node: Node) -> None:
    plane = node.plane
    assert "node-lifecycle-controller" in plane.controllers  # removes the not-ready taint
    assert "root-ca-certificate-publisher-controller" in plane.controllers  # kube-root-ca.crt
    assert plane._address_flags() == ["--bind-address=0.0.0.0", "--advertise-address=192.0.2.10"]


def test_missing_prerequisites_are_named(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match=r"kubelet in .*kube-scheduler in .*kube-proxy in"):
        check_prerequisites(tmp_path)
