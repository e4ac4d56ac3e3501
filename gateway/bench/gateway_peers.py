"""The peers SAGE's gateway is measured beside: nginx (the floor: a C reverse proxy), vllm-router
(Rust) and LiteLLM's proxy (Python), each configured to route the bench model to the mock upstream.

nginx comes from the Debian package (`nginx` on PATH). vllm-router and LiteLLM come from PyPI,
each in its own virtualenv under the user cache (`<cache>/bench-peers/<folder>`), made on request
(`--install-peers`). A peer that is not there is reported and left out; it never fails the run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.gateway_servers import MODEL, Layout, Target

from sage_api.paths import cache_dir
from sage_harness.net import free_port
from sage_harness.process import ManagedProcess

LITELLM_KEY = "sk-bench-only-litellm-master-key-0000000000"
"""LiteLLM's proxy refuses to start without a master key; requests then carry it."""


@dataclass(frozen=True)
class Peer:
    name: str
    """Its column in the table."""
    executable: str
    requirement: str | None = None
    """What pip installs into the peer's own virtualenv; None: a Debian package on PATH."""
    folder: str = ""
    """The virtualenv's folder under `<cache>/bench-peers`."""

    @property
    def venv(self) -> Path:
        return cache_dir() / "bench-peers" / self.folder

    def binary(self) -> Path | None:
        if self.requirement is None:
            found = shutil.which(self.executable)
            return Path(found) if found else None
        candidate = self.venv / "bin" / self.executable
        return candidate if candidate.exists() else None

    def missing(self) -> str:
        """Why it is left out (when `binary()` is None)."""
        if self.requirement is None:
            return f"`{self.executable}` is not on PATH (the Debian package {self.executable})"
        return f"not installed in {self.venv} (`--install-peers` installs {self.requirement} there)"

    def version(self) -> str:
        """Its version, for the report ("" when it is not there)."""
        binary = self.binary()
        if binary is None:
            return ""
        if self.requirement is None:  # `nginx -v` answers on stderr: "nginx version: nginx/1.22.1"
            done = subprocess.run([str(binary), "-v"], capture_output=True, text=True, check=False)
            return (done.stderr or done.stdout).strip().rsplit("/", 1)[-1]
        distribution = self.requirement.split("[", 1)[0]
        script = f"import importlib.metadata as m; print(m.version({distribution!r}))"
        python = str(self.venv / "bin" / "python")
        done = subprocess.run([python, "-c", script], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    def install(self) -> None:
        """A virtualenv of its own with the peer in it; failures are reported, never raised."""
        if self.requirement is None or self.binary() is not None:
            return
        print(f"==> installing {self.requirement} into {self.venv}", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
            subprocess.run([str(self.venv / "bin" / "pip"), "install", "--quiet", self.requirement], check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"==> installing {self.name} failed: {error}", flush=True)


PEERS = (
    Peer("nginx", "nginx"),
    Peer("vllm-router", "vllm-router", "vllm-router", "vllm-router"),
    Peer("LiteLLM", "litellm", "litellm[proxy]", "litellm"),
)

NGINX_PREAMBLE = """daemon off;
master_process on;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    keepalive_requests 1000000;
"""
"""One nginx worker in the foreground, its files in {folder}, no access log: every benchmark nginx's."""

NGINX_CONF = (
    "# The gateway benchmark's nginx: one worker, keep-alive to the upstream, nothing buffered.\n"
    + NGINX_PREAMBLE
    + """    upstream bench_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""
)

LITELLM_CONFIG = """model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {upstream}/v1
      api_key: sk-unused
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  disable_spend_logs: true
"""


def _nginx(binary: Path, layout: Layout, upstream: Target, folder: Path) -> Target:
    port = free_port()
    folder = folder / "nginx"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "nginx.conf"
    config.write_text(NGINX_CONF.format(folder=folder, upstream_port=upstream.port, port=port))
    # -e: the error log before the configuration is read (the default one is not ours to write).
    command = [*layout.prefix, str(binary), "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")]
    return Target("nginx", ManagedProcess("nginx", command), port)


def _vllm_router(binary: Path, layout: Layout, upstream: Target, folder: Path) -> Target:
    port = free_port()
    command = [*layout.prefix, str(binary), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--worker-urls", upstream.url, "--policy", "round_robin", "--log-level", "warning"]
    # Its metrics listener would take a fixed port otherwise.
    command += ["--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())]
    return Target("vllm-router", ManagedProcess("vllm-router", command), port)


def _litellm(binary: Path, layout: Layout, upstream: Target, folder: Path) -> Target:
    port = free_port()
    config = folder / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(model=MODEL, upstream=upstream.url))
    command = [*layout.prefix, str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    env = {
        "LITELLM_MASTER_KEY": LITELLM_KEY,
        # No fetching of the model cost map or anything else at start-up: loopback only.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_OFFLINE_MODE": "true",
        "LITELLM_LOG": "ERROR",
    }
    headers = {"authorization": f"Bearer {LITELLM_KEY}"}
    return Target("LiteLLM", ManagedProcess("litellm", command, env=env), port, headers, "/health/liveliness")


STARTERS: dict[str, Callable[[Path, Layout, Target, Path], Target]] = {
    "nginx": _nginx,
    "vllm-router": _vllm_router,
    "LiteLLM": _litellm,
}


def peer_targets(
    wanted: list[str], layout: Layout, upstream: Target, folder: Path, *, install: bool
) -> tuple[list[Target], dict[str, str]]:
    """The `wanted` peers that are there (installed first with `install`), not yet launched, and
    why each other one is left out."""
    targets, skipped = [], {}
    for peer in PEERS:
        if peer.name not in wanted:
            continue
        if install:
            peer.install()
        binary = peer.binary()
        if binary is None:
            skipped[peer.name] = peer.missing()
            print(f"==> {peer.name}: skipped, {skipped[peer.name]}", flush=True)
            continue
        targets.append(STARTERS[peer.name](binary, layout, upstream, folder))
    return targets, skipped
