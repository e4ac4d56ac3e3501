"""The gateway benchmark's `--profile`: SAGE's gateway sampled by py-spy under load, apart from the
measured rounds (sampling disturbs timing, so none of this load is in the tables).

py-spy comes from PyPI into a virtualenv of its own under the user cache, beside the peers'
(`--install-peers`). It reads the gateway's memory from outside (ptrace): root, CAP_SYS_PTRACE or a
permissive Yama `ptrace_scope` is needed, and a refusal ends the run saying so. Each run records
twice under the same load: a flame graph (SVG), then the raw collapsed stacks the tables are made
of. `--nonblocking`: the gateway is never paused (paused at hundreds of samples a second it would
serve a fraction of its load), at the price of a rare torn stack; `--subprocesses`: uvicorn
workers are sampled too; idle threads are left out (py-spy's default), so shares are of busy time.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.gateway_flame import Profile, ProfiledRun, parse_collapsed
from bench.gateway_peers import Peer

PY_SPY = Peer("py-spy", "py-spy", "py-spy", "py-spy")
"""Not a peer measured beside the gateway: the sampling profiler, installed the same way."""
ATTACH_SECONDS = 2.0
"""Load runs this much longer than a recording, so that it covers py-spy's start and end."""


class ProfileError(RuntimeError):
    """py-spy is missing, could not attach, or failed; the message says why and what to do."""


@dataclass(frozen=True)
class Sampling:
    rate: int
    """Samples per second."""
    seconds: float
    """Length of each recording."""

    def about(self, version: str, load: str) -> str:
        return (
            f"Sampled by py-spy {version} at {self.rate} Hz for {self.seconds:g} s per recording "
            f"(`--nonblocking --subprocesses --nolineno`), after the measured rounds and apart from them: "
            f"none of the profiled load is in the tables above. Load: {load}. Each run is recorded twice "
            "under the same load, once as the flame graph (SVG, click to zoom), once as raw collapsed "
            "stacks for the tables. Shares are of the samples where the gateway was busy (idle threads "
            "are left out): own time is where the interpreter was, including the C it called (uvloop's "
            "loop under `Runner.run`, socket writes under a `send`: on loopback a write's system call "
            "also carries the kernel's delivery to the receiver), inclusive time what was on the stack. A "
            "coroutine resumed by uvloop is sampled from its own outermost frame, not under the event "
            "loop's, so the entry point is on only part of the stacks."
        )


def ptrace_hint() -> str:
    """Why attaching may be refused here, and what lifts it."""
    try:
        scope = Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        scope = "absent"
    if os.geteuid() == 0:
        return (
            f"py-spy reads the gateway's memory through ptrace. This runs as root (Yama ptrace_scope: {scope}; "
            "3 forbids any attach), so the refusal comes from around the process: a container without "
            "CAP_SYS_PTRACE (`--cap-add SYS_PTRACE`) or a seccomp profile blocking ptrace/process_vm_readv"
        )
    return (
        f"py-spy reads the gateway's memory through ptrace. This runs as uid {os.geteuid()} with Yama ptrace_scope "
        f"{scope}: run as root, give py-spy the capability (`setcap cap_sys_ptrace+ep <py-spy>`), or allow "
        "attaching to any own process (`sysctl kernel.yama.ptrace_scope=0`)"
    )


def profiler() -> Path:
    """py-spy's executable; ProfileError, saying how to install it, when it is not there."""
    binary = PY_SPY.binary()
    if binary is None:
        raise ProfileError(
            f'--profile needs py-spy, {PY_SPY.missing()}: `make bench-gateway BENCH_ARGS="--install-peers --profile"`'
        )
    return binary


def preflight(binary: Path, pid: int) -> None:
    """One stack dump of `pid` before any load: a refused attach fails here, saying why."""
    done = subprocess.run(
        [str(binary), "dump", "--nonblocking", "--pid", str(pid)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()[-1500:]
        raise ProfileError(f"py-spy could not attach to the gateway (pid {pid}): {said}\n{ptrace_hint()}")


def record(
    binary: Path, pid: int, *, form: str, output: Path, sampling: Sampling, load: Callable[[float], object]
) -> None:
    """py-spy on `pid` (and its children) in format `form` into `output`, while `load(seconds)`
    keeps the gateway busy for the whole recording."""
    command = [str(binary), "record", "--pid", str(pid), "--format", form, "--output", str(output)]
    command += ["--rate", str(sampling.rate), "--duration", f"{max(1, round(sampling.seconds))}"]
    command += ["--nonblocking", "--subprocesses", "--nolineno"]
    spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        load(sampling.seconds + ATTACH_SECONDS)
        said, _ = spy.communicate(timeout=sampling.seconds + 60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if spy.returncode != 0 or not output.exists():
        raise ProfileError(f"py-spy record failed (code {spy.returncode}): {said.strip()[-1500:]}\n{ptrace_hint()}")


def profile_run(
    binary: Path,
    pid: int,
    *,
    names: tuple[str, str, str],
    folder: Path,
    sampling: Sampling,
    load: Callable[[float], object],
) -> ProfiledRun:
    """`names`: (target, scenario, the SVG's file name in `folder`). The raw stacks go to a
    temporary file beside it, read and removed."""
    target, scenario, svg = names
    record(binary, pid, form="flamegraph", output=folder / svg, sampling=sampling, load=load)
    raw = folder / (svg.removesuffix(".svg") + ".raw.txt")
    try:
        record(binary, pid, form="raw", output=raw, sampling=sampling, load=load)
        profile: Profile = parse_collapsed(raw.read_text())
    finally:
        raw.unlink(missing_ok=True)
    return ProfiledRun(target, scenario, svg, profile)
