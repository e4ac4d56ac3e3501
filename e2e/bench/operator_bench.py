"""Operator benchmark: create N LLMEngines at once against a real kube-apiserver (+ controller
manager) and measure how long until every one has its Deployment and Service, and until every
status is written; the operator's peak RSS; its CPU while nothing changes; and, after a restart,
whether every status is still right without being rewritten. Runs each configuration (worker
counts, and with --baseline REF the operator of an earlier commit beside this one) side by side,
interleaved over several rounds (the machine is shared: the median of each is reported), and
writes docs/perf/operator.md.

Usage: python e2e/bench/operator_bench.py [--engines 200] [--rounds 3] [--workers 1 8]
       [--baseline REF] [--resync-seconds S] [--idle-seconds 90] [--out docs/perf/operator.md]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sage_api.names import API_VERSION as API
from sage_harness.controlplane import ControlPlane, locate_binaries
from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.repo import REPO_ROOT, source_pythonpath
from sage_harness.waiting import wait_until
from sage_kube import resource_path
from sage_operator.settings import OperatorSettings

ENGINE = """---
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: e{index:04d}, namespace: {namespace}}}
spec: {{model: deterministic, backend: deterministic, replicas: 1}}
"""


@dataclass(frozen=True)
class Configuration:
    label: str
    workers: int
    source: Path
    """The checkout whose operator runs."""
    env: tuple[tuple[str, str], ...] = ()
    """Settings of its own (e.g. another resync period)."""


@dataclass
class Result:
    label: str
    workers: int
    engines: int
    children_seconds: float
    status_seconds: float
    peak_rss_mib: float
    operator_cpu_seconds: float
    idle_cpu_percent: float
    """Operator CPU while nothing changes, in % of one core, over a window holding a resync."""
    restart_rewrites: int
    """Engines whose object changed after an operator restart (their status was already right)."""
    restart_phases: int
    """Engines with a phase once the restarted operator has resynced."""


class Counter:
    """Counts children and statuses with plain API lists (cheaper than kubectl on a busy machine)."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.http = httpx.Client(base_url=plane.server, verify=plane.ssl_context(), timeout=30)
        self.namespace = namespace

    def items(self, api_version: str, plural: str) -> list[dict[str, Any]]:
        path = resource_path(api_version, plural, self.namespace)
        response = self.http.get(path, params={"labelSelector": "sage.ai/engine"} if api_version != API else {})
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def children(self) -> int:
        return min(len(self.items("apps/v1", "deployments")), len(self.items("v1", "services")))

    def pods(self) -> int:
        return len(self.items("v1", "pods"))

    def statuses(self) -> int:
        return sum(1 for item in self.items(API, "llmengines") if (item.get("status") or {}).get("phase"))

    def versions(self) -> dict[str, str]:
        return {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in self.items(API, "llmengines")}


def idle_cpu_percent(operator: OperatorProcess, seconds: float) -> float:
    before = operator.cpu_seconds()
    time.sleep(seconds)
    return 100 * (operator.cpu_seconds() - before) / seconds


def settle(operator: OperatorProcess, quiet_cpu_seconds: float = 0.05, every: float = 2.0) -> None:
    """Until the operator spends next to no CPU between two looks (its start-up resync is done)."""
    last = operator.cpu_seconds()
    while True:
        time.sleep(every)
        now = operator.cpu_seconds()
        if now - last < quiet_cpu_seconds:
            return
        last = now


def changed(before: dict[str, str], after: dict[str, str]) -> int:
    """How many objects of `before` have another resourceVersion (or are gone) in `after` (pure)."""
    return sum(1 for name, version in before.items() if after.get(name) != version)


def fresh_control_plane() -> contextlib.AbstractContextManager[ControlPlane]:
    """A control plane per run: the previous run's thousands of objects are not garbage-collected
    under the next one's measurement."""
    return ControlPlane(locate_binaries())


def run_once(config: Configuration, *, engines: int, workdir: Path, run: int, idle: float) -> Result:
    with fresh_control_plane() as plane:
        kubectl = Kubectl(locate_binaries() / "kubectl", plane.kubeconfig)
        kubectl("apply", "-f", str(REPO_ROOT / "crds"))
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "llmengines.sage.ai")
        return measure(plane, kubectl, config, engines=engines, workdir=workdir, run=run, idle=idle)


def measure(
    plane: ControlPlane, kubectl: Kubectl, config: Configuration, *, engines: int, workdir: Path, run: int, idle: float
) -> Result:
    workers, label = config.workers, config.label
    namespace = f"bench-{run}-w{workers}"
    kubectl("create", "namespace", namespace)
    manifest = "".join(ENGINE.format(index=i, namespace=namespace) for i in range(engines))
    env = {"SAGE_OPERATOR_WORKERS": str(workers), "PYTHONPATH": source_pythonpath(config.source), **dict(config.env)}
    log = workdir / f"operator-{run}-w{workers}.log"
    with OperatorProcess(plane.kubeconfig, log, env=env, args=("-n", namespace)) as operator:
        counter = Counter(plane, namespace)
        wait_until(lambda: "sage-operator started" in operator.log_tail(), "the operator to start")
        cpu_before = operator.cpu_seconds()
        print(f"[{label}] creating {engines} LLMEngines at once", flush=True)
        start = time.monotonic()
        kubectl("apply", "--server-side", "-f", "-", stdin=manifest)

        shown = [-1]

        def children_ready() -> bool:
            done = counter.children()
            if done != shown[0]:  # progress when it moves, not on every poll
                print(f"[{label}]   {done}/{engines} engines have Deployment + Service", flush=True)
                shown[0] = done
            return done >= engines

        wait_until(children_ready, "every Deployment and Service", timeout=1800, interval=0.5)
        children = time.monotonic() - start
        wait_until(lambda: counter.statuses() >= engines, "every status", timeout=1800, interval=0.5)
        status = time.monotonic() - start
        rss = operator.peak_rss_bytes() / 2**20
        cpu = operator.cpu_seconds() - cpu_before
        # The controller manager goes on making ReplicaSets and pods, and the operator writes the
        # statuses that name them: the idle window and the restart start once all of that is done.
        wait_until(lambda: counter.pods() >= engines, "every engine's pod", timeout=1800, interval=1)
        settle(operator)
        print(f"[{label}] idle for {idle:.0f}s", flush=True)
        idle_cpu = idle_cpu_percent(operator, idle)
        versions = counter.versions()
        print(f"[{label}] restarting the operator", flush=True)
        operator.restart()
        settle(operator)  # its first resync reconciles every engine
        wait_until(lambda: counter.statuses() >= engines, "every status after the restart", timeout=600)
        rewrites = changed(versions, counter.versions())
        phases = counter.statuses()
    return Result(label, workers, engines, children, status, rss, cpu, idle_cpu, rewrites, phases)


def median_of(results: list[Result], label: str) -> Result:
    mine = [r for r in results if r.label == label]
    return Result(
        label,
        mine[0].workers,
        mine[0].engines,
        statistics.median(r.children_seconds for r in mine),
        statistics.median(r.status_seconds for r in mine),
        max(r.peak_rss_mib for r in mine),
        statistics.median(r.operator_cpu_seconds for r in mine),
        statistics.median(r.idle_cpu_percent for r in mine),
        max(r.restart_rewrites for r in mine),
        min(r.restart_phases for r in mine),
    )


def write_report(results: list[Result], configurations: tuple[Configuration, ...], out: Path, idle: float) -> None:
    medians = [median_of(results, config.label) for config in configurations]
    slow, fast = medians[0], medians[-1]
    rounds = len(results) // len(configurations)
    lines = [
        "# Operator benchmark",
        "",
        f"`make bench-operator`: {fast.engines} LLMEngines (deterministic backend) created with one",
        "`kubectl apply --server-side` against a real kube-apiserver + etcd + kube-controller-manager",
        "(garbage collector, Deployment and ReplicaSet controllers running, so every Deployment also gets",
        "a ReplicaSet and a pod), all on the same machine as the operator, a fresh one for each run. The",
        "operator runs as",
        "`python -m sage_operator` and is measured from the apply until every engine has both children,",
        "and until every engine has a status. Peak RSS is the operator process's VmHWM. Then, once every",
        f"engine has its pod and the operator is quiet, nothing changes for {idle:.0f} s and the operator's CPU",
        "is read (an operator resyncs every SAGE_OPERATOR_RESYNC_SECONDS, its default or the row's); then",
        "it is restarted and, once it has reconciled everything again, the engines are counted: with a",
        "phase, and whose object it wrote although nothing had changed (0 is right).",
        "",
        f"This run: `python e2e/bench/operator_bench.py {' '.join(sys.argv[1:])}`.",
        "",
        f"Machine: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs shared with the control plane",
        f"(and with whatever else runs); Python {platform.python_version()}. Operator CPU is the process's",
        f"user + system time during the run. Rounds per configuration, interleaved: {rounds}; the table",
        "shows medians (peak RSS: the maximum), every run is listed below it.",
        "",
        "| operator | engines | all Deployments + Services (s) | all statuses written (s) | operator CPU (s) "
        f"| operator peak RSS (MiB) | idle CPU over {idle:.0f} s (% of a core) | after a restart: engines with "
        "a phase / objects rewritten |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.label} | {r.engines} | {r.children_seconds:.1f} | {r.status_seconds:.1f} | "
        f"{r.operator_cpu_seconds:.1f} | {r.peak_rss_mib:.0f} | {r.idle_cpu_percent:.1f} | "
        f"{r.restart_phases} / {r.restart_rewrites} |"
        for r in medians
    ]
    lines += ["", "Aims: every child in 30 s at 1,000 engines, peak RSS 200 MiB, idle CPU about 0, nothing rewritten."]
    if len(medians) > 1:
        lines += [
            "",
            f"Speed-up of {fast.label} over {slow.label} (medians, same run): "
            f"{slow.children_seconds / fast.children_seconds:.2f}x to all children, "
            f"{slow.status_seconds / fast.status_seconds:.2f}x to all statuses.",
        ]
    per_engine = ", ".join(f"{1000 * r.operator_cpu_seconds / r.engines:.0f} ms ({r.label})" for r in medians)
    lines += [
        "",
        f"Operator CPU per engine while creating: {per_engine}.",
        "",
        f"Reading it: until every child existed, the operator ({fast.label}) used "
        f"{fast.operator_cpu_seconds / fast.children_seconds:.0%} of one core",
        f"({fast.operator_cpu_seconds:.0f} s of CPU in {fast.children_seconds:.0f} s); the rest of the machine went"
        f" to the API server, etcd and the controller manager creating {fast.engines} Deployments, ReplicaSets"
        " and pods.",
        "Both sides share two CPUs, so the operator's CPU per engine and the API server's work bound",
        "the time together, and the spread between runs shows how much other load the machine carried.",
        "The idle column is what an operator costs while nothing changes, a resync (from its caches)",
        "included when the window holds one.",
        "",
        "Every run, in order (seconds to all children / to all statuses, idle CPU):",
        "",
        *[
            f"- {r.label}: {r.children_seconds:.1f} / {r.status_seconds:.1f}, {r.idle_cpu_percent:.1f} %"
            for r in results
        ],
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


def configurations_of(
    workers: list[int] | None, baseline: Path | None, ref: str | None, resync: float | None
) -> tuple[Configuration, ...]:
    """The baseline's first (ref: a short sha), then this commit's, with `resync` before the defaults."""
    counts = workers or [1, OperatorSettings().workers]
    ours = [Configuration(f"{count} workers", count, REPO_ROOT) for count in counts]
    if resync is not None:
        setting = (("SAGE_OPERATOR_RESYNC_SECONDS", f"{resync:g}"),)
        ours = [Configuration(f"{c.label}, resync {resync:g} s", c.workers, c.source, setting) for c in ours] + ours
    if baseline is None:
        return tuple(ours)
    theirs = [Configuration(f"{ref}, {count} workers", count, baseline) for count in counts]
    return (*theirs, *[Configuration(f"this commit, {c.label}", c.workers, c.source, c.env) for c in ours])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", type=int, default=200, help="LLMEngines created at once")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per configuration")
    parser.add_argument("--idle-seconds", type=float, default=90, help="the idle window (holds a resync)")
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts to compare (default: 1 and the default)")
    parser.add_argument("--baseline", metavar="REF", help="also run the operator of this git commit, side by side")
    parser.add_argument("--resync-seconds", type=float, help="also run this commit with this resync period")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "perf" / "operator.md")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sage-bench-")))
        baseline = None
        if args.baseline:
            baseline = folder / "baseline"
            git = ["git", "-C", str(REPO_ROOT), "worktree"]
            subprocess.run([*git, "add", "--detach", str(baseline), args.baseline], check=True, capture_output=True)
            stack.callback(subprocess.run, [*git, "remove", "--force", str(baseline)], check=False)
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", args.baseline or "HEAD"],
                             check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
        configurations = configurations_of(args.workers, baseline, sha, args.resync_seconds)
        results: list[Result] = []
        for round_index in range(args.rounds):
            order = configurations if round_index % 2 == 0 else configurations[::-1]
            for config in order:
                results.append(
                    run_once(config, engines=args.engines, workdir=folder, run=len(results), idle=args.idle_seconds)
                )
    write_report(results, configurations, args.out, args.idle_seconds)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"benchmark failed: {error}") from error
