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
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl
from sage_harness.lifecycle import Started
from sage_harness.net import free_port
from sage_harness.node_files import NodeFiles
from sage_harness.node_host import (
    BENCHMARK_RANGE,
    CNI_BIN_DIR,
    NodeError,
    check_prerequisites,
    host_address,
    kill_shims,
    pod_subnet,
    remove_kubelet_chains,
    remove_masquerade_rules,
    unmount_under,
)
from sage_harness.node_images import NODE_CACHE, LocalRegistry, record
from sage_harness.process import ManagedProcess
from sage_harness.waiting import WaitTimeout, wait_until

__all__ = ["BENCHMARK_RANGE", "CNI_BIN_DIR", "Node", "NodeError", "check_prerequisites", "host_address"]


@dataclass
class Node(NodeFiles, Started):
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
    _processes: list[ManagedProcess] = field(default_factory=list)
    _root_lock: IO[bytes] | None = None

    def __post_init__(self) -> None:
        self.address = self.address or self.plane.advertise_address or host_address()
        self.subnet = pod_subnet()
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
        return next((p.log_tail(lines) for p in self._processes if p.name == name), "")

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, log_path=self.workdir / f"{name}.log").launch()
        self._processes.append(process)
        return process

    def _check_alive(self) -> None:
        for process in self._processes:
            if not process.running():
                raise NodeError(str(process.failure("exited")))

    def ctr(self, *args: str, timeout: float = 1800, check: bool = True) -> str:
        argv = ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            msg = f"ctr {' '.join(args)} failed: {result.stderr.strip()}"
            raise NodeError(msg)
        return result.stdout

    # --- configuration ---------------------------------------------------------------------------

    # --- start -----------------------------------------------------------------------------------

    def start(self) -> Node:
        check_prerequisites(self.binaries)
        self.started_at = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.root = self._containerd_root()
        if not self.sandbox_image:
            from sage_harness.node_images import base_image  # noqa: PLC0415 - builds only when asked

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

    def _wait_for(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        """Until `condition` holds; NodeError at once when a part of the node exits, and with
        every part's log when it never holds."""

        def holds() -> bool:
            self._check_alive()
            return condition()

        try:
            wait_until(holds, what, timeout, interval=0.5, fatal=(NodeError,))
        except WaitTimeout as timeout_error:
            logs = "\n".join(f"--- {p.name}:\n{p.log_tail(15)}" for p in self._processes)
            raise NodeError(f"{timeout_error}\n{logs}") from None

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
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not self._running_tasks(), "the killed tasks to stop", 10, interval=0.2)
        for line in self.ctr("tasks", "ls", check=False).splitlines()[1:]:
            self.ctr("tasks", "delete", "--force", line.split()[0], check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).split():
            self.ctr("containers", "delete", container, check=False)

    def _drain(self, timeout: float = 45) -> None:
        """Cordon, delete every pod, and wait for the kubelet to stop their sandboxes (CNI DEL).
        Only the pods bound to this node are waited for: the controllers of what the tests left
        (a release's Deployments) make new pods at once, which stay Pending on a cordoned node,
        and waiting for those to go ran into the timeout at the end of every test run."""
        self.kubectl.run("cordon", self.name, check=False)
        self.kubectl.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", check=False)
        on_this_node = f"spec.nodeName={self.name}"

        def drained() -> bool:
            pods = self.kubectl.run("get", "pods", "-A", "-o", "name", "--field-selector", on_this_node, check=False)
            return pods.returncode == 0 and not pods.stdout.strip() and not self._running_tasks()

        with contextlib.suppress(WaitTimeout):
            wait_until(drained, "every pod to be gone", timeout, interval=0.5)

    def _running_tasks(self) -> list[str]:
        return [line for line in self.ctr("tasks", "ls", check=False).splitlines()[1:] if "RUNNING" in line]

    def stop(self) -> None:
        """Stop everything this node started, whatever state it is in."""
        kubelet_alive = any(p.name == "kubelet" and p.running() for p in self._processes)
        if kubelet_alive and self.socket.exists():
            with contextlib.suppress(Exception):
                self._drain()
        for name in ("kubelet", "kube-proxy", "kube-scheduler"):
            self._terminate(name)
        if self.socket.exists():
            with contextlib.suppress(Exception):
                self._remove_leftovers()
        self._terminate("containerd")
        kill_shims(self.socket)
        subprocess.run([str(self.binaries / "kube-proxy"), "--cleanup"], capture_output=True, check=False, timeout=60)
        unmount_under(self.state, self.kubelet_root, self.workdir, self.root)
        for path in sorted(self._netns):
            subprocess.run(["umount", path], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                Path(path).unlink()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        remove_masquerade_rules(self.network)
        remove_kubelet_chains()
        self._processes.clear()
        shutil.rmtree(self.state, ignore_errors=True)
        if self._root_lock is not None:
            self._root_lock.close()
            self._root_lock = None
        if not os.environ.get("SAGE_KEEP_NODE"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self, name: str) -> None:
        for process in self._processes:
            if process.name == name:
                process.stop(grace=20)
