"""Autoscaling benchmark on a real node: the node tier's harness brings up kube-apiserver + etcd +
controller manager, a kubelet with containerd and runc, kube-scheduler and kube-proxy, puts the
images built here on the node and runs `helm install sage charts/sage`. A deterministic LLMEngine
(minReplicas 0, maxReplicas 3, targetInflightRequests 1) is woken from zero by one request a few
times (the cold start, split into phases by watches on the engine and its pods), then takes a
load step 0 → N clients → 0 through the gateway; docs/perf/autoscaling.md and autoscaling.png.

Usage (root, node prerequisites installed):
    python e2e/bench/autoscale_bench.py [--clients 4] [--load-seconds 60] [--wakes 3] [--out docs/perf]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench.autoscale_report import ColdStart, Request, Sample, WatchEvent, cold_start, in_flight, render, summarise

from sage_harness.cluster_checks import namespace_report, port_forward
from sage_harness.controlplane import ControlPlane, locate_binaries
from sage_harness.helm import Helm
from sage_harness.kubectl import Kubectl, apply_crds
from sage_harness.load import ConstantLoad
from sage_harness.load import Request as LoadRequest
from sage_harness.node import Node, check_prerequisites, host_address
from sage_harness.node_images import LocalRegistry, NodeImages
from sage_harness.repo import REPO_ROOT
from sage_harness.waiting import wait_until

RELEASE, RELEASE_NAMESPACE, NAMESPACE, ENGINE = "sage", "sage-system", "bench-autoscale", "burst"
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
ENGINES_PATH = f"/apis/sage.ai/v1alpha1/namespaces/{NAMESPACE}/llmengines"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"
POD_SELECTOR = {"labelSelector": f"sage.ai/engine={ENGINE}"}
INTERVAL_SECONDS, WINDOW_SECONDS, SCALE_DOWN_DELAY, ENGINE_CPU, MAX_REPLICAS = 1, 4, 8, "500m", 3
WORDS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
# No cluster DNS on this node: the chart's `dns+http://<release>-gateway-pods...` cannot resolve in
# the operator's pod. The same three variables are passed by hand, the gateway Service named by the
# address Kubernetes puts in every pod's environment (its ClusterIP; one gateway replica behind it).
HELM_VALUES = {
    "gateway": {"replicas": 1},
    "operator": {
        "autoscaling": {"enabled": False},
        "extraEnv": [
            {"name": "SAGE_OPERATOR_GATEWAY_URLS", "value": "http://$(SAGE_GATEWAY_SERVICE_HOST):80"},
            {"name": "SAGE_OPERATOR_AUTOSCALE_SECONDS", "value": str(INTERVAL_SECONDS)},
            {"name": "SAGE_OPERATOR_AUTOSCALE_WINDOW_SECONDS", "value": str(WINDOW_SECONDS)},
        ],
    },
}


def engine_manifest(token_seconds: float) -> str:
    spec = {
        "model": "deterministic", "backend": "deterministic", "replicas": 0, "minReplicas": 0,
        "maxReplicas": MAX_REPLICAS, "targetInflightRequests": 1, "scaleDownDelaySeconds": SCALE_DOWN_DELAY,
        "resources": {"cpu": ENGINE_CPU, "memory": "256Mi"},
        "env": [{"name": "SAGE_ENGINE_TOKEN_SECONDS", "value": str(token_seconds)}],
    }  # fmt: skip
    return yaml.safe_dump({"apiVersion": "sage.ai/v1alpha1", "kind": "LLMEngine", "metadata": {"name": ENGINE},
                           "spec": spec})  # fmt: skip


def chat_body() -> dict[str, Any]:
    messages = [{"role": "user", "content": WORDS}]
    return {"model": ENGINE, "messages": messages, "max_tokens": 16, "stream": True}


class Watch(threading.Thread):
    """A list-then-watch of one API collection; every event stamped with time.monotonic() on arrival."""

    def __init__(self, plane: ControlPlane, path: str, params: dict[str, str]) -> None:
        super().__init__(daemon=True, name=f"watch {path}")
        self.http = httpx.Client(base_url=plane.server, verify=plane.ssl_context(), timeout=httpx.Timeout(10, read=30))
        self.path, self.params = path, params
        self.events: list[WatchEvent] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        version = ""
        while not self.stopped.is_set():
            try:
                if not version:
                    listing = self.http.get(self.path, params=self.params).raise_for_status().json()
                    self.events += [WatchEvent(time.monotonic(), "ADDED", item) for item in listing["items"]]
                    version = listing["metadata"]["resourceVersion"]
                params = self.params | {"watch": "1", "resourceVersion": version, "timeoutSeconds": "5"}
                with self.http.stream("GET", self.path, params=params) as response:
                    for line in response.iter_lines():
                        event = json.loads(line) if line.strip() else None
                        if event is None or event["type"] == "BOOKMARK":
                            continue
                        if event["type"] == "ERROR":  # e.g. 410 Gone: list again
                            version = ""
                            break
                        self.events.append(WatchEvent(time.monotonic(), event["type"], event["object"]))
                        version = event["object"]["metadata"]["resourceVersion"]
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.2)

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        self.http.close()


class Api:
    """The few reads the benchmark samples, straight to the API server (cheaper than kubectl)."""

    def __init__(self, plane: ControlPlane, gateway: str) -> None:
        self.http = httpx.Client(base_url=plane.server, verify=plane.ssl_context(), timeout=10)
        self.gateway = httpx.Client(base_url=gateway, timeout=10)

    def engine(self) -> dict[str, Any]:
        found: dict[str, Any] = self.http.get(f"{ENGINES_PATH}/{ENGINE}").raise_for_status().json()
        return found

    def ready_replicas(self) -> int:
        deployment = self.http.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{ENGINE}")
        return int((deployment.raise_for_status().json().get("status") or {}).get("readyReplicas") or 0)

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.http.get(PODS_PATH, params=POD_SELECTOR).raise_for_status().json()["items"]
        return items

    def load(self) -> dict[str, int]:
        engines = self.gateway.get("/load").raise_for_status().json()["engines"]
        return dict(engines.get(f"{NAMESPACE}/{ENGINE}") or {})

    def sample(self, origin: float) -> Sample:
        at = time.monotonic() - origin
        load = self.load()
        spec = int(self.engine()["spec"].get("replicas", 0))
        return Sample(at, spec, self.ready_replicas(), load.get("inflight", 0), load.get("held", 0))


@contextmanager
def sage_on_a_node(workdir: Path) -> Iterator[tuple[ControlPlane, Kubectl]]:
    """The node tier's bring-up (sage_testing.node_fixtures), outside pytest, with our helm values."""
    binaries = locate_binaries()
    check_prerequisites(binaries)
    with (
        ControlPlane(binaries, for_nodes=True, advertise_address=host_address()) as plane,
        LocalRegistry() as registry,
        Node(plane, binaries, registry) as node,
    ):
        kubectl = node.kubectl
        apply_crds(kubectl, REPO_ROOT / "crds")
        NodeImages(node, registry).ensure("operator", "gateway", "engine")
        for namespace in (RELEASE_NAMESPACE, NAMESPACE):
            kubectl("create", "namespace", namespace)
            kubectl("label", "namespace", namespace, RESTRICTED)
        values = workdir / "values.yaml"
        values.write_text(yaml.safe_dump(HELM_VALUES))
        Helm(binaries / "helm", plane.kubeconfig).install(RELEASE, RELEASE_NAMESPACE, "-f", str(values))
        for deployment in ("sage-operator", "sage-gateway"):
            rollout = kubectl.run("rollout", "status", "-n", RELEASE_NAMESPACE, f"deployment/{deployment}",
                                  "--timeout=240s", check=False)  # fmt: skip
            if rollout.returncode != 0:
                raise SystemExit(f"{deployment} not rolled out:\n{namespace_report(kubectl, RELEASE_NAMESPACE)}")
        wait_until(lambda: kubectl.run("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0,
                   "the default ServiceAccount", 30, interval=0.2)  # fmt: skip
        yield plane, kubectl


def check_autoscaler_reads_the_gateway(kubectl: Kubectl) -> None:
    """A few ticks after the engine exists, the operator must have read the gateway's load."""
    time.sleep(4 * INTERVAL_SECONDS)
    logs = kubectl("logs", "-n", RELEASE_NAMESPACE, "deployment/sage-operator", "--tail=200")
    if "did not report its load" in logs or "no gateway answered" in logs or "cannot resolve" in logs:
        raise SystemExit(f"the operator's autoscaler cannot read the gateway:\n{logs[-3000:]}")


def wait_at_zero(api: Api, timeout: float = 240) -> None:
    """Until the engine is at zero replicas and its last pod is gone."""
    wait_until(lambda: api.engine()["spec"].get("replicas") == 0 and not api.pods(), "the engine at zero", timeout, 0.5)


def first_token(base_url: str) -> tuple[float, float]:
    """One streamed chat completion: (sent, first token read), monotonic."""
    sent = time.monotonic()
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=chat_body(), timeout=300) as response:
        response.raise_for_status()
        token_at = None
        for line in response.iter_lines():
            if token_at is None and line.startswith("data: {"):
                choices = json.loads(line.removeprefix("data: ")).get("choices") or [{}]
                token_at = time.monotonic() if (choices[0].get("delta") or {}).get("content") else None
    if token_at is None:
        raise SystemExit("the cold request streamed no token")
    return sent, token_at


def measure_wakes(api: Api, base_url: str, engine_watch: Watch, pod_watch: Watch, wakes: int) -> list[ColdStart]:
    measured = []
    for index in range(wakes):
        wait_at_zero(api)
        time.sleep(2)  # the operator's and the gateway's views settle on zero too
        sent, token_at = first_token(base_url)
        time.sleep(1)  # the watches' last events of this wake
        measured.append(cold_start(sent, token_at, engine_watch.events, pod_watch.events))
        print(f"wake {index + 1}: " + ", ".join(f"{p:.2f}" for p in measured[-1].phases()), flush=True)
    return measured


def load_step(api: Api, base_url: str, clients: int, load_seconds: float) -> tuple[list[Sample], list[Request]]:
    """N clients from zero for `load_seconds`, then nothing until the engine is back at zero."""
    wait_at_zero(api)
    time.sleep(2)
    samples: list[Sample] = []
    stop = threading.Event()
    origin = time.monotonic()

    def sampling() -> None:
        while not stop.wait(0.5):
            try:
                samples.append(api.sample(origin))
            except (httpx.HTTPError, ValueError, KeyError) as error:
                print(f"sample skipped: {error}", flush=True)

    sampler = threading.Thread(target=sampling, daemon=True)
    sampler.start()
    mix = [LoadRequest("chat-stream", "/v1/chat/completions", chat_body())]
    with ConstantLoad(base_url, ENGINE, clients=clients, mix=mix, timeout=300) as load:
        time.sleep(load_seconds)
    print(f"load stopped after {time.monotonic() - origin:.0f}s; waiting for zero", flush=True)
    wait_until(lambda: samples and samples[-1].at > load_seconds and samples[-1].spec_replicas == 0,
               "the engine back at zero", 300, 0.5)  # fmt: skip
    time.sleep(8)  # the last pod's termination, on the plot
    stop.set()
    sampler.join(5)
    requests = [Request(o.started - origin, o.finished - origin, o.ok) for o in load.outcomes()]
    return samples, requests


def plot(samples: list[Sample], requests: list[Request], load_seconds: float, clients: int, path: Path) -> None:
    import matplotlib  # noqa: PLC0415 (heavy; only the report needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    at = [s.at for s in samples]
    figure, (replicas, flight, latency) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    replicas.step(at, [s.spec_replicas for s in samples], where="post", label="spec.replicas")
    replicas.step(at, [s.ready_replicas for s in samples], where="post", label="ready replicas")
    replicas.set_ylabel("replicas")
    flight.plot(at, [s.gateway_inflight for s in samples], label="in flight (gateway GET /load)")
    flight.plot(at, [s.gateway_held for s in samples], label="held for a replica (gateway)")
    flight.plot(at, [in_flight(requests, t) for t in at], linestyle=":", label="in flight (clients)")
    flight.set_ylabel("requests")
    for ok, colour, name in ((True, "tab:blue", "completed"), (False, "tab:red", "failed")):
        chosen = [r for r in requests if r.ok is ok]
        latency.scatter([r.sent for r in chosen], [r.finished - r.sent for r in chosen], s=8, c=colour, label=name)
    latency.set_ylabel("latency (s), at send time")
    latency.set_xlabel("seconds since the load started")
    for axes in (replicas, flight, latency):
        axes.axvspan(0, load_seconds, color="grey", alpha=0.12)
        axes.legend(loc="upper right", fontsize=8)
        axes.grid(alpha=0.3)
    figure.suptitle(f"{clients} clients of streamed chat completions (shaded), engine from zero and back")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def version_of(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else "unknown"


def machine_notes(binaries: Path) -> list[str]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    kubelet = version_of([str(binaries / "kubelet"), "--version"])
    return [
        f"Measured by `make bench-autoscale` (`e2e/bench/autoscale_bench.py`) on {time.strftime('%Y-%m-%d')}:",
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, {memory:.0f} GiB, no GPU, Linux",
        f"{platform.release()}, Python {platform.python_version()}. Everything on that one machine: the",
        f"control plane, the node ({kubelet}; {version_of(['containerd', '--version'])}; runc; CNI bridge), the",
        "images built here by `make images` (buildah), and the clients. The node tier's harness brings",
        "it up (`sage_harness.node`), then `helm install sage charts/sage` with the values below.",
        "",
        "The clients reach the gateway through `kubectl port-forward svc/sage-gateway` as the node tests",
        "and the README do; the benchmark reads the gateway's `GET /load` (in flight, held) the same way",
        "every 0.5 s, with the LLMEngine's `spec.replicas` and its Deployment's ready replicas from the",
        "API server. The node has no cluster DNS, so the chart's autoscaling switch (which names the",
        "gateways by their headless Service) is off and the operator gets the same variables through",
        "`operator.extraEnv`, the gateway named by its Service's ClusterIP (one gateway replica).",
        "Request latency is from the client's send to the stream's end. Figures come from one run on a",
        "shared machine; no test asserts any of them. Reproduce: `make bench-autoscale` (root, with the",
        "node tier's packages: `make node-prereqs`; `BENCH_ARGS='--clients 6'` for another step).",
    ]


def reading_the_latencies(clients: int, tokens: int, token_seconds: float) -> str:
    """Why the steady latency is what it is: one prompt for all, packed by the prefix-hash policy."""
    alone = tokens * token_seconds
    per_replica = math.ceil(1.25 * clients / MAX_REPLICAS)
    lines = [
        "",
        "Reading the latencies: the deterministic engine, like the CPU backends, generates for one stream at",
        f"a time on one thread: a stream alone takes {tokens} * {token_seconds} s = {alone:.1f} s, one queued",
        f"behind another {2 * alone:.1f} s. Every request carries the same prompt, and the gateway's default",
        "policy for LLMs (prefix-hash with bounded load, factor 1.25) places at most",
        f"ceil(1.25 * {clients} / {MAX_REPLICAS}) = {per_replica} of them on a replica, on the replicas the",
        "prefix hashes to: the prompt's cache stays warm where it is, at the price of queueing on an engine",
        "that does not batch. The requests held for the wake are all released to the first replica that is",
        "ready and queue there one behind another.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the load step")
    parser.add_argument("--load-seconds", type=float, default=60, help="how long the load step lasts")
    parser.add_argument("--wakes", type=int, default=3, help="cold starts from zero, one request each")
    parser.add_argument("--token-seconds", type=float, default=0.2, help="the engine's pause before each token")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "perf", help="folder of the report")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="sage-bench-autoscale-") as folder,
        sage_on_a_node(Path(folder)) as (plane, kubectl),
    ):
        kubectl.apply(engine_manifest(args.token_seconds), NAMESPACE)
        engine_watch = Watch(plane, ENGINES_PATH, {"fieldSelector": f"metadata.name={ENGINE}"})
        pod_watch = Watch(plane, PODS_PATH, POD_SELECTOR)
        engine_watch.start()
        pod_watch.start()
        with port_forward(kubectl, RELEASE_NAMESPACE, "svc/sage-gateway", 80) as base_url:
            api = Api(plane, base_url)
            wait_until(lambda: "inflight" in api.load(), "the gateway to discover the engine", 60, 0.5)
            check_autoscaler_reads_the_gateway(kubectl)
            wakes = measure_wakes(api, base_url, engine_watch, pod_watch, args.wakes)
            samples, requests = load_step(api, base_url, args.clients, args.load_seconds)
        engine_watch.stop()
        pod_watch.stop()
        selector = f"involvedObject.name={ENGINE},involvedObject.kind=LLMEngine"
        events = kubectl.json("get", "events", "-n", NAMESPACE, "--field-selector", selector)["items"]
        notes = machine_notes(locate_binaries())
    ordered = sorted(events, key=lambda e: str(e["metadata"]["creationTimestamp"]))
    settings = {
        "load step": f"{args.clients} clients, back to back, for {args.load_seconds:.0f} s, then none",
        "request": f"streamed chat completion, {len(WORDS.split()) + 1} tokens, "
        f"{args.token_seconds} s per token (SAGE_ENGINE_TOKEN_SECONDS)",
        "LLMEngine": f"deterministic backend, minReplicas 0, maxReplicas {MAX_REPLICAS}, targetInflightRequests 1, "
        f"scaleDownDelaySeconds {SCALE_DOWN_DELAY}, {ENGINE_CPU} CPU per pod",
        "operator": f"SAGE_OPERATOR_AUTOSCALE_SECONDS {INTERVAL_SECONDS}, _WINDOW_SECONDS {WINDOW_SECONDS}",
        "gateway": "1 replica, chart defaults otherwise (SAGE_GATEWAY_HOLD_SECONDS 300)",
    }
    report = render(settings, wakes, summarise(samples, requests, args.load_seconds), notes)
    report += reading_the_latencies(args.clients, len(WORDS.split()) + 1, args.token_seconds)
    report += "\nThe engine's Events during the run, in order:\n\n"
    report += "".join(f"- {e['reason']}: {e['message']}\n" for e in ordered if e["reason"].startswith("Scal"))
    args.out.mkdir(parents=True, exist_ok=True)
    plot(samples, requests, args.load_seconds, args.clients, args.out / "autoscaling.png")
    (args.out / "autoscaling.md").write_text(report)
    print(report)
    print("median cold start:", statistics.median(w.phases()[-1] for w in wakes), flush=True)


if __name__ == "__main__":
    main()
