"""A soak: constant mixed load (chat streams, chat, embeddings) through the gateway to real engine
processes, with a chat replica SIGKILLed and started again on a schedule, every process's RSS and
open files sampled each second. `make soak` runs ten minutes and writes docs/perf/soak.md with its
plot; the test tier runs one minute (e2e/tests/test_soak.py).

Usage: python -m sage_harness.soak [--seconds 600] [--kill-every 60] [--out docs/perf]"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.load import ConstantLoad, Request, chat, embeddings
from sage_harness.net import free_port
from sage_harness.process import ManagedProcess
from sage_harness.repo import REPO_ROOT
from sage_harness.soak_report import Fault, Report, Sample, markdown, plot

CHAT, VECTORS = "echo", "vectors"
TOKEN_SECONDS = "0.01"
MIX: tuple[Request, ...] = (
    chat(CHAT, stream=True, max_tokens=16),
    chat(CHAT, stream=False, max_tokens=16),
    embeddings(VECTORS),
)


def read_process(process: ManagedProcess) -> tuple[float, int] | None:
    """RSS (MB) and open file descriptors of a running process; None once it is gone."""
    if process.process is None or not process.running():
        return None
    with contextlib.suppress(OSError, RuntimeError):  # it may exit between the check and the read
        return process.rss_bytes() / 2**20, process.open_files()
    return None


def _engine(model: str, port: int) -> EngineProcess:
    return EngineProcess("deterministic", model, port=port, extra_args=("--token-seconds", TOKEN_SECONDS))


@dataclass
class Rig:
    """Two chat replicas and an embeddings engine behind one gateway (static discovery)."""

    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @contextlib.contextmanager
    def running(self) -> Iterator[GatewayProcess]:
        try:
            for name, model in (("chat-a", CHAT), ("chat-b", CHAT), ("vectors", VECTORS)):
                self.processes[name] = _engine(model, free_port()).start()
            engines = [
                {"name": CHAT, "urls": [self.url("chat-a"), self.url("chat-b")]},
                {"name": VECTORS, "urls": [self.url("vectors")], "kind": "embedding"},
            ]
            env = {"SAGE_GATEWAY_DISCOVERY": "static", "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(engines)}
            gateway = GatewayProcess(env=env).start()
            self.processes["gateway"] = gateway
            yield gateway
        finally:
            for process in self.processes.values():
                process.stop()

    def url(self, name: str) -> str:
        process = self.processes[name]
        assert isinstance(process, EngineProcess)
        return process.base_url

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL, then the same engine again on the same port, waited for until healthy."""
        victim = self.processes[name]
        assert isinstance(victim, EngineProcess)
        victim.signal(signal.SIGKILL)
        victim.wait_exit(30)
        victim.stop()
        self.processes[name] = _engine(victim.model, victim.port).start()


def _sampler(rig: Rig, origin: float, samples: list[Sample], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for name, process in list(rig.processes.items()):
            reading = read_process(process)
            if reading is not None:
                samples.append(Sample(name, time.monotonic() - origin, *reading))


def soak(seconds: float, kill_every: float, clients: int = 3, window: float = 60.0) -> Report:
    rig, samples, faults = Rig(), list[Sample](), list[Fault]()
    with rig.running() as gateway, ConstantLoad(gateway.base_url, clients=clients, mix=MIX) as load:
        origin = time.monotonic()
        stop = threading.Event()
        sampler = threading.Thread(target=_sampler, args=(rig, origin, samples, stop), daemon=True)
        sampler.start()
        next_kill = kill_every
        while (now := time.monotonic() - origin) < seconds:
            if now >= next_kill and now + 5 < seconds:
                rig.kill_and_restart("chat-b")
                faults.append(Fault("chat-b", now, time.monotonic() - origin))
                next_kill += kill_every
            time.sleep(0.1)
        stop.set()
        sampler.join()
    outcomes = [o for o in load.outcomes() if o.started - origin < seconds]
    mix = ", ".join(request.kind for request in MIX)
    return Report(seconds, clients, mix, outcomes, origin, faults, samples, window)


def write(report: Report, out: Path, command: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plot(report, out / "soak.png")
    page = out / "soak.md"
    page.write_text(markdown(report, command, "soak.png"))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sage_harness.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="how long the load runs (default 600)")
    parser.add_argument("--kill-every", type=float, default=60, help="seconds between replica kills (default 60)")
    parser.add_argument("--clients", type=int, default=3, help="concurrent clients (default 3)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "perf", help="where soak.md and soak.png go")
    args = parser.parse_args(argv)
    window = 60.0 if args.seconds >= 300 else args.seconds / 6
    print(f"soak: {args.seconds:.0f}s, a chat replica killed every {args.kill_every:.0f}s ...", flush=True)
    report = soak(args.seconds, args.kill_every, args.clients, window)
    page = write(report, args.out, f"make soak SOAK_SECONDS={args.seconds:.0f}")
    print(page.read_text())
    return 0 if report.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
