"""Where and how to reach the API server: a kubeconfig file, or the pod's service account."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sage_runtime.pod import SERVICE_ACCOUNT_DIR


class ConfigError(RuntimeError):
    """No usable credentials were found."""


@dataclass(frozen=True)
class KubeConfig:
    """Connection settings for one API server and identity."""

    server: str
    namespace: str = "default"
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    token_file: Path | None = None
    insecure_skip_tls_verify: bool = False

    def bearer_token(self) -> str | None:
        """The current token; a projected service-account token is re-read because it rotates."""
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.insecure_skip_tls_verify:
            return False
        context = ssl.create_default_context()
        if self.ca_pem:
            context.load_verify_locations(cadata=self.ca_pem.decode())
        if self.client_cert_pem and self.client_key_pem:
            # The ssl module only loads key material from files: write them privately, then remove.
            with tempfile.TemporaryDirectory(prefix="sage-kube-") as folder:
                cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
                cert.write_bytes(self.client_cert_pem)
                key.touch(mode=0o600)
                key.write_bytes(self.client_key_pem)
                context.load_cert_chain(cert, key)
        return context


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if data := entry.get(f"{key}-data"):
        return base64.b64decode(data)
    if path := entry.get(key):
        return (base / str(path)).read_bytes()
    return None


def from_kubeconfig(path: Path, context_name: str | None = None) -> KubeConfig:
    document = yaml.safe_load(path.read_text()) or {}
    context_name = context_name or document.get("current-context")
    contexts = {c["name"]: c["context"] for c in document.get("contexts") or []}
    if context_name not in contexts:
        msg = f"kubeconfig {path} has no context {context_name!r}"
        raise ConfigError(msg)
    context = contexts[context_name]
    clusters = {c["name"]: c["cluster"] for c in document.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in document.get("users") or []}
    cluster = clusters[context["cluster"]]
    user = users.get(context.get("user", ""), {})
    base = path.parent
    token = user.get("token")
    token_file = Path(base / user["tokenFile"]) if user.get("tokenFile") else None
    return KubeConfig(
        server=cluster["server"].rstrip("/"),
        namespace=context.get("namespace") or "default",
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        client_cert_pem=_data_or_file(user, "client-certificate", base),
        client_key_pem=_data_or_file(user, "client-key", base),
        token=token,
        token_file=token_file,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
    )


def in_cluster(service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeConfig:
    """The pod's own credentials: the API server's address from the kubelet-set environment, the
    mounted ServiceAccount token (re-read on every request: projected tokens rotate) and CA."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    token, ca = service_account_dir / "token", service_account_dir / "ca.crt"
    if not host or not port or not token.is_file() or not ca.is_file():
        msg = "not running in a pod and no kubeconfig found (set KUBECONFIG)"
        raise ConfigError(msg)
    namespace_file = service_account_dir / "namespace"
    return KubeConfig(
        server=f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}",
        namespace=namespace_file.read_text().strip() if namespace_file.exists() else "default",
        ca_pem=ca.read_bytes(),
        token_file=token,
    )


def load_config(kubeconfig: str | Path | None = None) -> KubeConfig:
    """Explicit path, else $KUBECONFIG, else the pod's service account, else ~/.kube/config."""
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    if explicit:
        return from_kubeconfig(Path(str(explicit).split(os.pathsep)[0]))
    try:
        return in_cluster()
    except ConfigError:
        default = Path.home() / ".kube" / "config"
        if default.exists():
            return from_kubeconfig(default)
        raise
