"""A real Kubernetes control plane for tests: etcd + kube-apiserver (+ kube-controller-manager).

The way controller-runtime's envtest does it: binaries from `KUBEBUILDER_ASSETS`, else built from
Go modules by `e2e/envtest/build-binaries.sh` into the user cache; free loopback ports; a throwaway
CA; an admin client certificate (CN=default, O=system:masters) written into a kubeconfig. No
kubelet and no scheduler: pods never run, which is what engine processes on loopback stand in for.

`for_nodes=True` (with an `advertise_address` pods can reach) prepares it for a real kubelet
(sage_harness.node): the Node authorizer and NodeRestriction, the ServiceAccount admission plugin
(pods get their API token), a client certificate the API server shows kubelets (`kubectl logs`,
`exec`, `port-forward`), and the node-lifecycle and root-CA-publisher controllers.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sage_harness.lifecycle import Started
from sage_harness.net import free_port
from sage_harness.process import ManagedProcess, ProcessError
from sage_harness.repo import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / "e2e" / "envtest" / "build-binaries.sh"
# Room for 4,094 Services (the operator benchmark makes one per engine, 1,000 of them); the first
# address is the `kubernetes` Service, which the serving certificate names.
SERVICE_RANGE = "10.0.0.0/20"


# Controllers worth having without nodes: garbage collection (owner references), Deployments ->
# ReplicaSets -> Pods, Jobs, namespace deletion, EndpointSlices, service-account tokens, quotas.
CONTROLLERS = (
    "garbagecollector",
    "deployment",
    "replicaset",
    "job",
    "namespace",
    "endpointslice",
    "serviceaccount",
    "serviceaccount-token",
    "resourcequota",
)


# Added for a real node: the not-ready taint removed once the kubelet reports Ready, the
# kube-root-ca.crt ConfigMap every pod's service-account volume mounts, pods of gone nodes
# cleaned up, and claims bound to the PersistentVolumes tests create.
NODE_CONTROLLERS = (
    "node-lifecycle-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "persistentvolume-binder-controller",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be provisioned or started."""


def locate_binaries() -> Path:
    """The folder holding kube-apiserver, etcd, kube-controller-manager, kubectl and helm."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / "kube-apiserver").exists() and (Path(assets) / "etcd").exists():
        return Path(assets)
    if shutil.which("go") is None and not assets:
        msg = "no KUBEBUILDER_ASSETS and no Go toolchain to build kube-apiserver and etcd"
        raise ControlPlaneError(msg)
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, timeout=3600)
    if result.returncode != 0:
        msg = f"building the control-plane binaries failed:\n{result.stderr[-4000:]}"
        raise ControlPlaneError(msg)
    return Path(result.stdout.strip().splitlines()[-1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue_certificate(folder: Path, name: str, subject: str, ext: str = "client.ext") -> tuple[Path, Path]:
    """`name`.crt/.key signed by the throwaway CA in `folder` (client use unless `ext` says otherwise)."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.crt", cwd=folder)  # fmt: skip
    return folder / f"{name}.crt", folder / f"{name}.key"


def make_certificates(folder: Path, extra_addresses: tuple[str, ...] = ()) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost (and `extra_addresses`), an admin client
    certificate and a service-account signing key, all throwaway."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sage-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)  # fmt: skip
    extra = "".join(f",IP:{address}" for address in extra_addresses)
    (folder / "serving.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc{extra}\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    issue_certificate(folder, "serving", "/CN=127.0.0.1", "serving.ext")
    issue_certificate(folder, "admin", "/O=system:masters/CN=default")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, certs: Path, user: str = "admin") -> None:
    """A kubeconfig for `server` with the client certificate `certs`/`user`.crt (and .key)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "envtest", "cluster": {"server": server, "certificate-authority-data": _b64(certs / "ca.crt")}}
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": _b64(certs / f"{user}.crt"),
                    "client-key-data": _b64(certs / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin", "namespace": "default"}}],
        "current-context": "envtest",
    }
    path.write_text(yaml.safe_dump(config))


@dataclass
class ControlPlane(Started):
    """A running etcd + kube-apiserver (+ kube-controller-manager). Use as a context manager."""

    binaries: Path
    with_controller_manager: bool = True
    # A real kubelet will join (see the module docstring); existing behaviour when False.
    for_nodes: bool = False
    # An address pods can reach the API server at (the `kubernetes` Service's endpoint): the API
    # server then listens on every address and advertises this one. None: 127.0.0.1 only.
    advertise_address: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sage-envtest-")))
    server: str = ""
    api_port: int = 0
    kubeconfig: Path = field(init=False)
    _processes: list[ManagedProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kubeconfig = self.workdir / "kubeconfig"

    @property
    def certs(self) -> Path:
        return self.workdir / "certs"

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, log_path=self.workdir / f"{name}.log").launch()
        self._processes.append(process)
        return process

    def log_tail(self, name: str, lines: int = 40) -> str:
        return next((p.log_tail(lines) for p in self._processes if p.name == name), "")

    def start(self) -> ControlPlane:
        extra_addresses = (self.advertise_address,) if self.advertise_address else ()
        make_certificates(self.certs, extra_addresses)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            str(self.binaries / "etcd"), "--name=default", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])  # fmt: skip
        certs = self.certs
        self.server = f"https://127.0.0.1:{api_port}"
        self.api_port = api_port
        self._spawn("kube-apiserver", [
            str(self.binaries / "kube-apiserver"),
            f"--etcd-servers={etcd_url}", f"--secure-port={api_port}",
            *self._address_flags(),
            f"--tls-cert-file={certs / 'serving.crt'}", f"--tls-private-key-file={certs / 'serving.key'}",
            f"--client-ca-file={certs / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_RANGE}", "--allow-privileged=true",
            *self._node_flags(),
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={certs / 'sa.pub'}",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            f"--cert-dir={certs}", "--v=0",
        ])  # fmt: skip
        write_kubeconfig(self.kubeconfig, self.server, certs)
        self._wait_ready()
        if self.with_controller_manager and (self.binaries / "kube-controller-manager").exists():
            self._spawn("kube-controller-manager", [
                str(self.binaries / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}", f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--service-account-private-key-file={certs / 'sa.key'}",
                f"--root-ca-file={certs / 'ca.crt'}", "--leader-elect=false",
                f"--secure-port={free_port()}", "--bind-address=127.0.0.1",
                f"--controllers={','.join(self.controllers)}",
                "--concurrent-gc-syncs=5",
            ])  # fmt: skip
        return self

    @property
    def controllers(self) -> tuple[str, ...]:
        return (*CONTROLLERS, *NODE_CONTROLLERS) if self.for_nodes else CONTROLLERS

    def _address_flags(self) -> list[str]:
        if self.advertise_address is None:
            return ["--bind-address=127.0.0.1"]
        return ["--bind-address=0.0.0.0", f"--advertise-address={self.advertise_address}"]

    def _node_flags(self) -> list[str]:
        if not self.for_nodes:
            return ["--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount"]
        # What the API server shows kubelets when it proxies logs/exec/port-forward to them.
        crt, key = issue_certificate(
            self.certs, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"
        )
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={crt}",
            f"--kubelet-client-key={key}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]

    def client_kubeconfig(self, name: str, subject: str, server: str | None = None) -> Path:
        """A kubeconfig of its own for a component (e.g. a kubelet: O=system:nodes,
        CN=system:node:<name>), its certificate signed by this control plane's CA."""
        issue_certificate(self.certs, name, subject)
        path = self.workdir / f"{name}.kubeconfig"
        write_kubeconfig(path, server or self.server, self.certs, user=name)
        return path

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the test CA and presents the admin client certificate."""
        context = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        context.load_cert_chain(self.certs / "admin.crt", self.certs / "admin.key")
        return context

    def _wait_ready(self, timeout: float = 90) -> None:
        apiserver = next(p for p in self._processes if p.name == "kube-apiserver")
        for process in self._processes:
            if not process.running():
                raise ControlPlaneError(str(process.failure("exited")))
        try:
            apiserver.wait_http_ok(f"{self.server}/readyz", timeout, verify=self.ssl_context())
        except ProcessError as error:
            raise ControlPlaneError(str(error)) from None

    @contextlib.contextmanager
    def api_server_down(self) -> Iterator[None]:
        """The API server stopped for the duration of the block (etcd, and so every object, stays),
        then started again with the same flags on the same address, and waited for."""
        apiserver = next(p for p in self._processes if p.name == "kube-apiserver")
        apiserver.stop(grace=15)
        try:
            yield
        finally:
            apiserver.launch()
            self._wait_ready()

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop(grace=15)
        self._processes.clear()
        if not os.environ.get("SAGE_KEEP_ENVTEST"):
            shutil.rmtree(self.workdir, ignore_errors=True)
