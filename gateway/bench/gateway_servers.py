"""The servers of the gateway benchmark: where they run (CPU pinning), what they cost (process-tree
CPU and RSS from /proc), and the ones the project brings (the mock upstream and SAGE's gateway).

Every server is a `Target`: a process started on the servers' CPU, the loopback port it answers
on and the headers a request to it needs. The peers (nginx, vllm-router, LiteLLM) are made in
`gateway_peers`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sage_api.apikey import key_hash
from sage_harness.gateway import GatewayProcess
from sage_harness.net import free_port
from sage_harness.proc_tree import descendants
from sage_harness.process import ManagedProcess, ProcessError
from sage_harness.repo import source_pythonpath
from sage_harness.waiting import WaitTimeout, wait_until

MODEL = "echo"
"""The model every request names; each server routes it to the mock upstream."""
BENCH_KEY = "sk-sage-bench-only-key-0000000000000000"
# Limits never reached in a run, so every request pays for checking and counting them.
KEY_MANIFEST = """apiVersion: sage.ai/v1alpha1
kind: APIKey
metadata: {{name: bench}}
spec:
  keyHash: {hash}
  requestsPerMinute: 100000000
  tokensPerMinute: 1000000000
  maxConcurrentRequests: 100000
"""


def pinned_to(cpus: Iterable[int]) -> list[str]:
    """What a command line starts with to run on `cpus` only (its children too)."""
    return ["taskset", "-c", ",".join(str(cpu) for cpu in sorted(cpus))]


@dataclass(frozen=True)
class Layout:
    """Which CPUs the servers and the load generator run on (no pinning: both None)."""

    server_cpu: int | None = None
    client_cpu: int | None = None

    @property
    def prefix(self) -> list[str]:
        """What a server's command line starts with."""
        return [] if self.server_cpu is None else pinned_to([self.server_cpu])

    def describe(self) -> str:
        if self.server_cpu is None:
            return "no CPU pinning: the load generator and the servers share every CPU"
        return f"every server pinned to CPU {self.server_cpu}, the load generator to CPU {self.client_cpu} (taskset)"


def choose_layout(pin: bool | None) -> Layout:
    """Pin when asked, or by default when there are two CPUs to split; the caller then moves
    itself (the load generator) onto the client CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if pin is None:
        pin = len(cpus) >= 2
    if not pin:
        return Layout()
    if len(cpus) < 2 or shutil.which("taskset") is None:
        print("==> not pinning: needs two CPUs and taskset", flush=True)
        return Layout()
    return Layout(server_cpu=cpus[-1], client_cpu=cpus[0])


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` alone (0 when it is gone)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its live descendants (nginx's worker, a uvicorn worker)."""
    ticks = 0
    for member in {pid} | descendants(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue  # gone meanwhile
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its live descendants (VmRSS, summed)."""
    total = 0
    for member in {pid} | descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


@dataclass
class Target:
    """A server under test: the table's column `name`, answering on `port`."""

    name: str
    process: ManagedProcess
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/health"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process.process is not None, "launch() first"
        return self.process.process.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return tree_rss_bytes(self.pid)

    def wait_ready(self, body: bytes, timeout: float) -> None:
        """Until its ready path answers 200 and a chat completion through it does too (a proxy
        may be up before its upstream is routable); ProcessError with its log otherwise."""
        self.process.wait_http_ok(self.url + self.ready_path, timeout)
        headers = {"content-type": "application/json", **self.headers}
        with httpx.Client(timeout=10) as client:

            def answered() -> bool:
                if not self.process.running():
                    raise self.process.failure("exited")
                return client.post(f"{self.url}/v1/chat/completions", content=body, headers=headers).status_code == 200

            try:
                wait_until(answered, f"{self.name}: a chat completion answered 200", timeout, fatal=(ProcessError,))
            except WaitTimeout as error:
                raise self.process.failure(str(error)) from None


class PinnedGateway(GatewayProcess):
    """SAGE's gateway (or `module`, run like it) with the layout's CPU prefix on its command line."""

    def __init__(self, prefix: list[str], env: dict[str, str], module: str = "sage_gateway") -> None:
        super().__init__(env=env, module=module)
        self.prefix = prefix

    def command(self) -> list[str]:
        return [*self.prefix, *super().command()]


def upstream_target(layout: Layout, kind: str) -> Target:
    """The upstream every other target proxies to: the raw-ASGI mock, or the engine server's
    deterministic backend (`kind`)."""
    port = free_port()
    if kind == "deterministic":
        command = [sys.executable, "-m", "sage_engine", "--backend", "deterministic", "--model", MODEL]
        command += ["--host", "127.0.0.1", "--port", str(port)]
    else:
        script = str(Path(__file__).with_name("mock_engine.py"))
        command = [sys.executable, script, "--port", str(port), "--model", MODEL]
    env = {"PYTHONPATH": source_pythonpath(), "HF_HUB_OFFLINE": "1"}
    return Target("direct", ManagedProcess(f"{kind}-upstream", [*layout.prefix, *command], env=env), port)


def gateway_env(upstream: Target) -> dict[str, str]:
    """SAGE's gateway routing the bench model to `upstream` (static discovery), logging warnings only."""
    return {
        "SAGE_GATEWAY_DISCOVERY": "static",
        "SAGE_GATEWAY_STATIC_ENGINES": json.dumps([{"name": MODEL, "urls": [upstream.url]}]),
        "SAGE_GATEWAY_LOG_LEVEL": "warning",
    }


def sage_gateway(layout: Layout, upstream: Target, *, keys_folder: Path | None = None, workers: int = 1) -> Target:
    """SAGE's gateway with static discovery in front of `upstream`; with `keys_folder`, it
    requires the bench key and checks requests-, tokens- and concurrency limits; with `workers`
    above 1, it runs that many worker processes (without keys)."""
    env = gateway_env(upstream)
    if workers > 1:
        process = PinnedGateway(layout.prefix, env | {"SAGE_GATEWAY_WORKERS": str(workers)})
        return Target(f"SAGE {workers} workers", process, process.port, ready_path="/readyz")
    if keys_folder is None:
        process = PinnedGateway(layout.prefix, env)
        return Target("SAGE", process, process.port, ready_path="/readyz")
    keyed_env, headers = with_bench_key(keys_folder)
    process = PinnedGateway(layout.prefix, env | keyed_env)
    return Target("SAGE keys+limits", process, process.port, headers, ready_path="/readyz")


def with_bench_key(keys_folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """What makes a gateway require the bench key (its APIKey written into `keys_folder`), with
    limits never reached: (the gateway's environment, the headers a request to it needs)."""
    keys = keys_folder / "bench-keys.yaml"
    keys.write_text(KEY_MANIFEST.format(hash=key_hash(BENCH_KEY)))
    env = {"SAGE_GATEWAY_AUTH": "api-keys", "SAGE_GATEWAY_API_KEYS_FILE": str(keys)}
    return env, {"authorization": f"Bearer {BENCH_KEY}"}
