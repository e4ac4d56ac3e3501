"""Discovery benchmark: an engine's endpoint turns ready -> every gateway replica routes to it, with
N LLMEngines known (and back: not ready -> 503). Real kube-apiserver + etcd, real gateway processes
in Kubernetes discovery mode, one real engine process; writes docs/perf/discovery.md.

Usage (root: the engine runs in a stand-in pod network, sage_harness.podnet):
    make bench-discovery      # BENCH_ARGS='--engines 2000 --gateways 3' for another size; or
    PYTHONPATH=$(make -s print-pythonpath) HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
        .venv/bin/python e2e/bench/discovery_bench.py --engines 1000 --gateways 2 --rounds 20
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from bench.discovery_report import (
    GatewayStart,
    Machine,
    Observation,
    Round,
    Run,
    engine_name,
    pick_engines,
    render,
)

from sage_api.names import API_VERSION, ENGINE_PLURAL
from sage_harness.controlplane import ControlPlane, locate_binaries
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.kubectl import Kubectl, apply_crds
from sage_harness.podnet import PodNetwork
from sage_harness.repo import REPO_ROOT
from sage_harness.waiting import wait_until
from sage_kube import resource_path
from sage_operator.engine.render import endpoint_url, selector_string
from sage_testing.engine_objects import endpoint_slice, kubernetes_gateway_env

NAMESPACE, EMPTY_NAMESPACE = "bench-discovery", "bench-discovery-empty"
ENGINE = """apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}}}
spec: {{model: deterministic, backend: deterministic, replicas: 1}}
"""
APPLY_BATCH = 250
"""Documents per `kubectl apply` (each call stays well inside the harness's kubectl timeout)."""
JSON_PATCH = {"content-type": "application/json-patch+json"}
MERGE_PATCH = {"content-type": "application/merge-patch+json"}


class UnexpectedAnswer(RuntimeError):
    """A gateway answered something other than 200 (routed) or 503 (no ready replica)."""


def loading_status(name: str) -> dict[str, Any]:
    """What the operator writes for a one-replica engine whose pod is still loading."""
    message = "0/1 replicas ready: loading the model"
    condition = {"observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z", "message": message}
    return {
        "phase": "Loading",
        "backend": "deterministic",
        "replicas": 1,
        "readyReplicas": 0,
        "ready": "0/1",
        "selector": selector_string(name),
        "endpoint": endpoint_url(name, NAMESPACE),
        "servedModels": [name],
        "observedGeneration": 1,
        "message": message,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "Loading", **condition},
            {"type": "Progressing", "status": "True", "reason": "Loading", **condition},
        ],
    }


def slice_path(name: str) -> str:
    return resource_path("discovery.k8s.io/v1", "endpointslices", NAMESPACE, f"{name}-a")


def create_engines(kubectl: Kubectl, api: httpx.Client, names: list[str], address: str, port: int) -> None:
    """The LLMEngines with their statuses, and one not-ready EndpointSlice each."""
    documents = [ENGINE.format(name=name) for name in names]
    documents += [endpoint_slice(name, address, port, ready=False) for name in names]
    for start in range(0, len(documents), APPLY_BATCH):
        batch = "---\n" + "---\n".join(documents[start : start + APPLY_BATCH])
        kubectl("apply", "--server-side", "-n", NAMESPACE, "-f", "-", stdin=batch)
        print(f"  applied {min(start + APPLY_BATCH, len(documents))}/{len(documents)} objects", flush=True)
    for name in names:
        path = resource_path(API_VERSION, ENGINE_PLURAL, NAMESPACE, name, "status")
        api.patch(path, json={"status": loading_status(name)}, headers=MERGE_PATCH).raise_for_status()


def set_ready(api: httpx.Client, name: str, ready: bool) -> None:
    patch = [{"op": "replace", "path": "/endpoints/0/conditions/ready", "value": ready}]
    api.patch(slice_path(name), json=patch, headers=JSON_PATCH).raise_for_status()


def start_gateway(
    env: dict[str, str], log: Path, engines: int, stack: contextlib.ExitStack
) -> tuple[GatewayProcess, GatewayStart]:
    """Launches a gateway (stopped with `stack`), waits until it is ready with `engines` listed, and
    measures it."""
    gateway = GatewayProcess(env=env, startup_timeout=900, log_path=log)
    launched = time.monotonic()
    stack.enter_context(gateway)

    def listed() -> int:
        count: int = httpx.get(f"{gateway.base_url}/readyz").json()["engines"]
        return count

    wait_until(lambda: listed() >= engines, f"the gateway to list {engines} engines", timeout=900)
    seconds = time.monotonic() - launched
    rss, peak = gateway.rss_bytes() / 2**20, gateway.peak_rss_bytes() / 2**20
    return gateway, GatewayStart(listed(), seconds, gateway.cpu_seconds(), rss, peak)


def empty_start(env: dict[str, str], log: Path) -> GatewayStart:
    with contextlib.ExitStack() as stack:
        return start_gateway(env, log, 0, stack)[1]


class Poller:
    """One thread per gateway, each polling its own gateway for one model until it answers `want`."""

    def __init__(self, gateways: list[GatewayProcess], replica: str, interval: float, timeout: float) -> None:
        self.clients = [httpx.Client(base_url=g.base_url, timeout=30) for g in gateways]
        self.replica, self.interval, self.timeout = replica, interval, timeout
        self.pool = ThreadPoolExecutor(max_workers=len(gateways), thread_name_prefix="poller")

    def _poll(self, client: httpx.Client, model: str, want: int, go: threading.Event, t0: list[float]) -> Observation:
        go.wait()
        polls = 0

        def answered() -> Observation | None:
            nonlocal polls
            polls += 1
            sent = time.monotonic()
            response = client.post("/v1/embeddings", json={"model": model, "input": "x"})
            now = time.monotonic()
            if response.status_code not in (200, 503):
                raise UnexpectedAnswer(f"{client.base_url} {model}: {response.status_code} {response.text[:300]}")
            if response.status_code == 200 and response.headers.get("x-sage-replica") != self.replica:
                raise UnexpectedAnswer(f"{client.base_url} {model}: answered by {response.headers}")
            return Observation(now - t0[0], polls, now - sent) if response.status_code == want else None

        what = f"{client.base_url} to answer {want} for {model}"
        return wait_until(answered, what, self.timeout, self.interval, fatal=(UnexpectedAnswer,))

    def measure(self, model: str, want: int, change: Callable[[], None]) -> tuple[float, tuple[Observation, ...]]:
        """Starts every poller, takes t0, makes `change`; the change's round trip and what each saw."""
        go, t0 = threading.Event(), [0.0]
        futures = [self.pool.submit(self._poll, client, model, want, go, t0) for client in self.clients]
        t0[0] = time.monotonic()
        go.set()
        change()
        patched = time.monotonic() - t0[0]
        return patched, tuple(future.result() for future in futures)

    def close(self) -> None:
        self.pool.shutdown()
        for client in self.clients:
            client.close()


def run_rounds(poller: Poller, api: httpx.Client, picks: list[str], reverse: bool) -> list[Round]:
    rounds = []
    for number, name in enumerate(picks, start=1):
        patched, routable = poller.measure(name, 200, lambda: set_ready(api, name, True))  # noqa: B023 (used at once)
        refused: tuple[Observation, ...] = ()
        if reverse:
            time.sleep(0.2)
            _, refused = poller.measure(name, 503, lambda: set_ready(api, name, False))  # noqa: B023
        else:
            set_ready(api, name, False)
        rounds.append(Round(name, patched, routable, refused))
        slowest = rounds[-1].every_gateway_routable
        print(f"  round {number}/{len(picks)}: {name} routable by every gateway after {1000 * slowest:.0f} ms")
        time.sleep(0.3)
    return rounds


def machine() -> Machine:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    model = models[0] if models else platform.machine()
    meminfo = Path("/proc/meminfo").read_text().split()
    memory_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    cpus = len(os.sched_getaffinity(0))
    return Machine(cpus, model, memory_gib, platform.python_version(), platform.platform(), os.getloadavg())


def benchmark(args: argparse.Namespace, workdir: Path) -> Run:
    names = [engine_name(i) for i in range(args.engines)]
    # One more pick than rounds: the first is a warm-up round (the gateways' first request to the
    # engine opens their connection to it and runs their request path for the first time), not counted.
    picks = [names[i] for i in pick_engines(args.engines, args.rounds + 1, args.seed)]
    notes = machine()
    binaries = locate_binaries()
    with contextlib.ExitStack() as stack:
        plane = stack.enter_context(ControlPlane(binaries, with_controller_manager=False))
        kubectl = Kubectl(binaries / "kubectl", plane.kubeconfig)
        api = stack.enter_context(httpx.Client(base_url=plane.server, verify=plane.ssl_context(), timeout=60))
        apply_crds(kubectl, REPO_ROOT / "crds")
        kubectl("create", "namespace", NAMESPACE)
        kubectl("create", "namespace", EMPTY_NAMESPACE)
        pod = stack.enter_context(PodNetwork()).add_pod()
        engine = EngineProcess(
            "deterministic",
            "echo",
            served_model_name=names[0],
            aliases=names[1:],
            host=pod.address,
            wrapper=pod.exec_prefix,
        )
        stack.enter_context(engine)
        print(f"creating {args.engines} LLMEngines, statuses and EndpointSlices", flush=True)
        create_engines(kubectl, api, names, pod.address, engine.port)
        empty = empty_start(kubernetes_gateway_env(plane.kubeconfig, EMPTY_NAMESPACE), workdir / "empty.log")
        env = kubernetes_gateway_env(plane.kubeconfig, NAMESPACE)
        starts, gateways = [], []
        for index in range(args.gateways):
            gateway, start = start_gateway(env, workdir / f"gateway-{index + 1}.log", args.engines, stack)
            gateways.append(gateway)
            starts.append(start)
            print(f"gateway {index + 1} listed {args.engines} engines in {starts[-1].list_seconds:.2f} s", flush=True)
        poller = Poller(gateways, f"http://{pod.address}:{engine.port}", args.poll_interval, args.timeout)
        stack.callback(poller.close)
        print(f"warm-up round: {picks[0]}", flush=True)
        run_rounds(poller, api, picks[:1], reverse=True)
        rounds = run_rounds(poller, api, picks[1:], not args.no_reverse)
    command = f"python e2e/bench/discovery_bench.py --engines {args.engines} --gateways {args.gateways} "
    command += f"--rounds {args.rounds} --seed {args.seed}"
    return Run(args.engines, command, notes, args.poll_interval, empty, tuple(starts), tuple(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", type=int, default=1000, help="LLMEngines (each with an EndpointSlice)")
    parser.add_argument("--gateways", type=int, default=2, help="gateway replicas (processes)")
    parser.add_argument("--rounds", type=int, default=20, help="engines made ready one after the other")
    parser.add_argument("--seed", type=int, default=1, help="which engines the rounds pick")
    parser.add_argument("--poll-interval", type=float, default=0.002, help="seconds between one poller's requests")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a round waits for a gateway")
    parser.add_argument("--no-reverse", action="store_true", help="skip measuring not ready -> 503")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "perf" / "discovery.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sage-bench-discovery-") as folder:
        report = render(benchmark(args, Path(folder)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
