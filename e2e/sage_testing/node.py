"""A real node beside the test control plane: containerd + runc + CNI, kube-scheduler, kube-proxy
and a kubelet, so that pods really run (design/NODE.md has every setting and why).

    with ControlPlane(binaries, for_nodes=True, advertise_address=host_address()) as plane, \\
         LocalRegistry() as registry, Node(plane, binaries, registry) as node:
        ...  # pods scheduled, pulled from the local registry, run by runc, reachable at their IPs

Layout: a work folder per node (configs, logs, kubelet root, CNI state) and a short state folder
under /run (containerd's sockets). containerd's root (its image store) is kept in the user cache
between runs so that images pulled once stay; a second node on the machine at the same time gets
a root of its own. Everything the node started is stopped on exit, even after a failure: pods
are deleted through the API first (so CNI tears their networks down), then whatever is left is
killed, unmounted and removed (tasks, shims of our containerd only, mounts under our folders,
network namespaces of our sandboxes, our bridge, kube-proxy's rules).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from sage_testing.envtest import ControlPlane, free_port
from sage_testing.kubectl import Kubectl
from sage_testing.node_images import NODE_CACHE, LocalRegistry, record

# Pod addresses: inside 198.18.0.0/15 (routed nowhere), in the half sage_testing.podnet does not
# take for the same process, so that both can run in one session.
BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
COMMANDS = ("containerd", "ctr", "runc", "iptables", "ip", "buildah", "docker-registry", "mount")


class NodeError(RuntimeError):
    """The node could not be provisioned, started, or did not become Ready."""


def host_address() -> str:
    """This machine's address on its default route (what pods reach the API server at);
    SAGE_NODE_IP overrides."""
    if os.environ.get("SAGE_NODE_IP"):
        return os.environ["SAGE_NODE_IP"]
    routes = json.loads(_output(["ip", "-j", "-4", "route", "show", "default"]) or "[]")
    devices = [route["dev"] for route in routes if "dev" in route]
    for device in [*devices, None]:
        argv = ["ip", "-j", "-4", "addr", "show", *(["dev", device] if device else [])]
        for link in json.loads(_output(argv) or "[]"):
            for info in link.get("addr_info", []):
                if info.get("scope") == "global":
                    return str(info["local"])
    msg = "no global IPv4 address on this machine for pods to reach the API server at (set SAGE_NODE_IP)"
    raise NodeError(msg)


def _output(argv: list[str], timeout: float = 60) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return result.stdout if result.returncode == 0 else ""


def check_prerequisites(binaries: Path) -> None:
    """Raise NodeError naming what is missing to run a node here."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("root (containerd, runc, CNI and iptables need it)")
    problems += [f"`{c}`" for c in COMMANDS if shutil.which(c) is None and not Path(f"/usr/sbin/{c}").exists()]
    if not (CNI_BIN_DIR / "bridge").exists() or not (CNI_BIN_DIR / "host-local").exists():
        problems.append(f"CNI plugins in {CNI_BIN_DIR}")
    problems += [
        f"{b} in {binaries}" for b in ("kubelet", "kube-scheduler", "kube-proxy") if not (binaries / b).exists()
    ]
    if problems:
        msg = "a real node needs " + ", ".join(problems) + " (run e2e/node/install-prerequisites.sh and make binaries)"
        raise NodeError(msg)


def _pod_subnet() -> ipaddress.IPv4Network:
    subnets = list(BENCHMARK_RANGE.subnets(new_prefix=24))
    return subnets[(os.getpid() + len(subnets) // 2) % len(subnets)]


@dataclass
class Node:
    """One node named `name`, registered with `plane`, pulling through `registry`."""

    plane: ControlPlane
    binaries: Path
    registry: LocalRegistry
    sandbox_image: str = ""  # docker.io/... reference of the pause image; set by start() if empty
    name: str = "sage-node"
    address: str = ""
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sage-node-")))
    started_at: float = 0.0
    ready_after: float = 0.0
    _processes: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)
    _root_lock: IO[bytes] | None = None

    def __post_init__(self) -> None:
        self.address = self.address or self.plane.advertise_address or host_address()
        self.subnet = _pod_subnet()
        tag = f"{os.getpid() % 100000}"
        self.bridge = f"sgn{tag}"[:15]
        self.network = f"sage-node-{tag}"
        self.state = Path(f"/run/sage-node-{tag}")
        self.socket = self.state / "containerd.sock"
        self.kubelet_root = self.workdir / "kubelet"
        self.root = self.workdir / "containerd-root"  # start() takes the shared one when free
        self.kubelet_port, self.kubelet_healthz_port = free_port(), free_port()
        self.kubectl = Kubectl(self.binaries / "kubectl", self.plane.kubeconfig)
        self._netns: set[str] = set()

    # --- layout ----------------------------------------------------------------------------------

    def _containerd_root(self) -> Path:
        """The shared root in the user cache when no other node holds it, else one of our own."""
        shared = NODE_CACHE / "containerd-root"
        shared.mkdir(parents=True, exist_ok=True)
        lock = (NODE_CACHE / "containerd-root.lock").open("wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return self.workdir / "containerd-root"
        self._root_lock = lock
        return shared

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._processes.append((name, process, log))
        return process

    def _check_alive(self) -> None:
        for name, process, _ in self._processes:
            if process.poll() is not None:
                msg = f"{name} exited with {process.returncode}:\n{self.log_tail(name)}"
                raise NodeError(msg)

    def ctr(self, *args: str, timeout: float = 1800, check: bool = True) -> str:
        argv = ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            msg = f"ctr {' '.join(args)} failed: {result.stderr.strip()}"
            raise NodeError(msg)
        return result.stdout

    # --- configuration ---------------------------------------------------------------------------

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

    # --- start -----------------------------------------------------------------------------------

    def start(self) -> Node:
        check_prerequisites(self.binaries)
        self.started_at = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.root = self._containerd_root()
        if not self.sandbox_image:
            from sage_testing.node_images import base_image  # noqa: PLC0415 - builds only when asked

            local = base_image(pause=True)
            repository, _, tag = local.removeprefix("localhost/").rpartition(":")
            if self.registry.manifest_digest(repository, tag) is None:  # the tag is a content hash
                self.registry.push(local, repository, tag)
            self.sandbox_image = f"docker.io/{repository}:{tag}"
        cni_conf = self._write_cni()
        self._spawn("containerd", ["containerd", "--config", str(self._write_containerd_config(cni_conf))])
        self._wait_for("containerd", lambda: self.socket.exists() and bool(self.ctr("version", check=False)), 30)
        self._remove_leftovers()
        if self.image_digest(self.sandbox_image) is None:
            self.pull(self.sandbox_image)

        admin = str(self.plane.kubeconfig)
        self._spawn("kube-scheduler", [
            str(self.binaries / "kube-scheduler"), f"--kubeconfig={admin}",
            f"--authentication-kubeconfig={admin}", f"--authorization-kubeconfig={admin}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--v=1",
        ])  # fmt: skip
        self._spawn("kube-proxy", [
            str(self.binaries / "kube-proxy"), f"--config={self._write_kube_proxy_config()}", "--v=1",
        ])  # fmt: skip
        kubeconfig = self.plane.client_kubeconfig(f"kubelet-{self.name}", f"/O=system:nodes/CN=system:node:{self.name}")
        self._spawn("kubelet", [
            str(self.binaries / "kubelet"), f"--config={self._write_kubelet_config()}",
            f"--kubeconfig={kubeconfig}", f"--root-dir={self.kubelet_root}",
            f"--cert-dir={self.workdir / 'kubelet-pki'}", f"--hostname-override={self.name}",
            f"--node-ip={self.address}", "--v=1",
        ])  # fmt: skip
        self._wait_for("the Node to be Ready and schedulable", self._ready, 120)
        self.ready_after = time.monotonic() - self.started_at
        record("node-ready", self.ready_after, node=self.name)
        return self

    def _wait_for(self, what: str, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(Exception):
                if condition():
                    return
            time.sleep(0.5)
        logs = "\n".join(f"--- {name}:\n{self.log_tail(name, 15)}" for name, _, _ in self._processes)
        msg = f"timed out after {timeout}s waiting for {what}\n{logs}"
        raise NodeError(msg)

    def _ready(self) -> bool:
        node = self.kubectl.json("get", "node", self.name)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        taints = [t["key"] for t in node["spec"].get("taints", [])]
        return ready and not any(key.startswith("node.kubernetes.io/") for key in taints)

    # --- images ----------------------------------------------------------------------------------

    def image_digest(self, reference: str) -> str | None:
        for line in self.ctr("images", "ls", f"name=={reference}").splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == reference:
                return parts[2]
        return None

    def pull(self, reference: str) -> None:
        """Pull `reference` (docker.io/...) through the local registry mirror into k8s.io."""
        self.ctr("images", "pull", "--hosts-dir", str(self.workdir / "certs.d"), reference)

    def prune_images(self) -> None:
        """Drop image references no tag leads to any more: CRI keeps a `sha256:<image id>` name
        for every version it saw, so a re-pointed tag would leave the old layers on disk forever.
        Images a container uses are kept."""
        references = [line.split() for line in self.ctr("images", "ls").splitlines()[1:] if line.strip()]
        wanted: set[str] = set()
        for name, _, digest, *_ in references:
            if not name.startswith("sha256:"):
                with contextlib.suppress(Exception):
                    wanted.add(json.loads(self.ctr("content", "get", digest))["config"]["digest"])
        in_use = {line.split()[1] for line in self.ctr("containers", "ls").splitlines()[1:] if len(line.split()) > 1}
        for name, *_ in references:
            if name.startswith("sha256:") and name not in wanted and name not in in_use:
                self.ctr("images", "rm", name, check=False)

    # --- stop ------------------------------------------------------------------------------------

    def _sandbox_netns(self) -> set[str]:
        """Network-namespace paths of this containerd's sandboxes (ours to remove)."""
        found: set[str] = set()
        for container in self.ctr("containers", "ls", "-q", check=False).split():
            with contextlib.suppress(Exception):
                info = json.loads(self.ctr("containers", "info", container, check=False) or "{}")
                for namespace in info.get("Spec", {}).get("linux", {}).get("namespaces", []):
                    if namespace.get("type") == "network" and namespace.get("path", "").startswith("/var/run/netns/"):
                        found.add(namespace["path"])
        return found

    def _remove_leftovers(self) -> None:
        """Kill and remove every task and container in k8s.io (a crashed earlier run's, on the
        shared root); images stay."""
        self._netns |= self._sandbox_netns()
        for line in self.ctr("tasks", "ls", check=False).splitlines()[1:]:
            task = line.split()[0]
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            running = [line for line in self.ctr("tasks", "ls", check=False).splitlines()[1:] if "RUNNING" in line]
            if not running:
                break
            time.sleep(0.2)
        for line in self.ctr("tasks", "ls", check=False).splitlines()[1:]:
            self.ctr("tasks", "delete", "--force", line.split()[0], check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).split():
            self.ctr("containers", "delete", container, check=False)

    def _drain(self, timeout: float = 45) -> None:
        """Cordon, delete every pod, and wait for the kubelet to stop their sandboxes (CNI DEL)."""
        self.kubectl.run("cordon", self.name, check=False)
        self.kubectl.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.kubectl.run("get", "pods", "-A", "-o", "name", check=False)
            running = [line for line in self.ctr("tasks", "ls", check=False).splitlines()[1:] if "RUNNING" in line]
            if pods.returncode == 0 and not pods.stdout.strip() and not running:
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop everything this node started, whatever state it is in."""
        kubelet_alive = any(name == "kubelet" and p.poll() is None for name, p, _ in self._processes)
        if kubelet_alive and self.socket.exists():
            with contextlib.suppress(Exception):
                self._drain()
        for name in ("kubelet", "kube-proxy", "kube-scheduler"):
            self._terminate(name)
        if self.socket.exists():
            with contextlib.suppress(Exception):
                self._remove_leftovers()
        self._terminate("containerd")
        self._kill_our_shims()
        subprocess.run([str(self.binaries / "kube-proxy"), "--cleanup"], capture_output=True, check=False, timeout=60)
        self._unmount_under(self.state, self.kubelet_root, self.workdir, self.root)
        for path in sorted(self._netns):
            subprocess.run(["umount", path], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                Path(path).unlink()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        self._remove_masquerade_rules()
        self._remove_kubelet_chains()
        for _, _, log in self._processes:
            log.close()
        self._processes.clear()
        shutil.rmtree(self.state, ignore_errors=True)
        if self._root_lock is not None:
            self._root_lock.close()
            self._root_lock = None
        if not os.environ.get("SAGE_KEEP_NODE"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self, name: str) -> None:
        for process_name, process, _ in self._processes:
            if process_name != name or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _kill_our_shims(self) -> None:
        """containerd-shim processes outlive containerd; kill those started for our socket only."""
        marker = str(self.socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                    os.kill(int(entry.name), signal.SIGKILL)

    @staticmethod
    def _unmount_under(*folders: Path) -> None:
        """Lazily unmount every mount below `folders`, deepest first (shm, rootfs, tmpfs volumes)."""
        prefixes = tuple(f"{folder.resolve()}/" for folder in folders)
        points: list[str] = []
        with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mountinfo:
            for line in mountinfo:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefixes):
                    points.append(point)
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def _remove_masquerade_rules(self) -> None:
        """The bridge plugin's ipMasq rules for our network (left behind when a sandbox was killed
        rather than torn down)."""
        rules = _output(["iptables", "-t", "nat", "-S", "POSTROUTING"]).splitlines()
        for rule in rules:
            if f'name: \\"{self.network}\\"' in rule or f'name: "{self.network}"' in rule:
                args = rule.split()[2:]  # drop "-A POSTROUTING"
                subprocess.run(
                    ["iptables", "-t", "nat", "-D", "POSTROUTING", *_unquote(args)], check=False, capture_output=True
                )
                if "-j" in args:
                    chain = args[args.index("-j") + 1]
                    subprocess.run(["iptables", "-t", "nat", "-F", chain], capture_output=True, check=False)
                    subprocess.run(["iptables", "-t", "nat", "-X", chain], capture_output=True, check=False)

    def _remove_kubelet_chains(self) -> None:
        """The chains every kubelet creates (and never removes): KUBE-FIREWALL (a DROP rule for
        non-local traffic to 127/8), the canaries, the hint. Left alone while another kubelet runs."""
        if _other_kubelets():
            return
        for tool in ("iptables", "ip6tables"):
            if shutil.which(tool) is None:
                continue
            for table in ("filter", "nat", "mangle"):
                for rule in _output([tool, "-t", table, "-S"]).splitlines():
                    words = rule.split()
                    if (
                        words[:1] == ["-A"]
                        and words[1] in {"INPUT", "OUTPUT"}
                        and words[-2:] == ["-j", "KUBE-FIREWALL"]
                    ):
                        subprocess.run([tool, "-t", table, "-D", *words[1:]], capture_output=True, check=False)
                for chain in KUBELET_CHAINS:
                    subprocess.run([tool, "-t", table, "-F", chain], capture_output=True, check=False)
                    subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)

    def __enter__(self) -> Node:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _other_kubelets() -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path((entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")).name == "kubelet":
                    return True
    return False


def _unquote(args: list[str]) -> list[str]:
    """`iptables -S` quotes comments; split on spaces broke them: rejoin the quoted words."""
    return shlex.split(" ".join(args))
