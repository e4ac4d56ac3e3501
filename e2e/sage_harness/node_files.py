"""The configuration files of a test node's parts (containerd, CNI, kubelet, kube-proxy), with
the settings NODE.md found necessary on this kind of machine, each written into its work folder."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from sage_harness.controlplane import ControlPlane
from sage_harness.net import free_port
from sage_harness.node_host import CNI_BIN_DIR
from sage_harness.node_images import LocalRegistry


class NodeFiles:
    """Writes the files; `Node` provides the layout."""

    plane: ControlPlane
    registry: LocalRegistry
    sandbox_image: str
    name: str
    address: str
    workdir: Path
    root: Path
    state: Path
    socket: Path
    kubelet_root: Path
    kubelet_port: int
    kubelet_healthz_port: int
    subnet: ipaddress.IPv4Network
    bridge: str
    network: str

    def _write_cni(self) -> Path:
        conf_dir = self.workdir / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(self.subnet)}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf_dir / "10-sage.conflist").write_text(json.dumps(conflist, indent=2))
        return conf_dir

    def _write_containerd_config(self, cni_conf: Path) -> Path:
        hosts = self.workdir / "certs.d" / "docker.io"
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(self.registry.hosts_toml())
        runc = shutil.which("runc") or "/usr/sbin/runc"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{self.root}"
state = "{self.state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.root}/opt"
[{cri}]
  # The sandbox lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the pause container asks -998).
  restrict_oom_score_adj = true
  # Must already be in the k8s.io namespace (no registry upstream) and never exit.
  sandbox_image = "{self.sandbox_image}"
  disable_apparmor = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [{cri}.registry]
    config_path = "{self.workdir / "certs.d"}"
"""
        path = self.workdir / "containerd.toml"
        path.write_text(config)
        return path

    def _write_kubelet_config(self) -> Path:
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.address,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.kubelet_healthz_port,
            # The API server's kubelet client certificate is signed by the control plane's CA.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.certs / "ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            # cgroup v1 host: kubelet 1.35 refuses it unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            # cAdvisor cannot read the root block device's filesystem stats here.
            "localStorageCapacityIsolation": False,
            "evictionHard": {
                "memory.available": "0%",
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
                "imagefs.available": "0%",
                "imagefs.inodesFree": "0%",
            },
            "evictionPressureTransitionPeriod": "0s",
            # Never garbage-collect the images this node was given.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "10s",
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "shutdownGracePeriod": "0s",
            "volumePluginDir": str(self.kubelet_root / "volume-plugins"),
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _write_kube_proxy_config(self) -> Path:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.plane.kubeconfig)},
            "hostnameOverride": self.name,
            "mode": "iptables",
            "clusterCIDR": str(self.subnet),
            "bindAddress": self.address,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Leave the host's conntrack sysctls alone (not ours to change, and refused in a sandbox).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        return path
