"""Throughput from `wrk` (the Debian package, optional): a C load generator on one thread, so
that at 64 connections the figure is the server's, not the Python client's ceiling."""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.gateway_load import Measurement

MARKER = "sage-bench-wrk"
# The summary wrk's `done` hook prints: requests, duration in µs, failed (socket errors + non-2xx).
SCRIPT = """wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{marker} %d %d %d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def wrk_script(body: bytes, headers: dict[str, str]) -> str:
    lines = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items())
    return SCRIPT.format(body=body.decode(), headers=lines, marker=MARKER)


def parse_summary(output: str) -> tuple[int, float, int]:
    """(requests, seconds, failed) from the `done` hook's line."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            requests, micros, failed = (int(value) for value in line.split()[1:4])
            return requests, micros / 1e6, failed
    msg = f"no summary in wrk's output: {output[-500:]!r}"
    raise ValueError(msg)


@dataclass
class WrkRun:
    """What one wrk run reports: its requests, how long it ran, the failed ones among them, and
    wrk's own CPU time; `error` says why there is no summary (then the counts are 0)."""

    requests: int = 0
    seconds: float = 0.0
    failed: int = 0
    cpu_seconds: float = 0.0
    error: str = ""


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(
    url: str, body: bytes, headers: dict[str, str], *, connections: int, seconds: float, prefix: Sequence[str] = ()
) -> WrkRun:
    """Non-streaming chat completions on `connections` keep-alive connections for `seconds` (whole
    seconds, at least 1), wrk's command line starting with `prefix` (taskset). wrk's CPU is this
    process's reaped children's over the run: the servers under test are never reaped meanwhile."""
    with tempfile.TemporaryDirectory(prefix="sage-bench-wrk-") as folder:
        script = Path(folder) / "chat.lua"
        script.write_text(wrk_script(body, headers))
        command = [*prefix, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
        command += ["-s", str(script), f"{url}/v1/chat/completions"]
        cpu_before = _children_cpu_seconds()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        run = WrkRun(cpu_seconds=_children_cpu_seconds() - cpu_before)
    try:
        run.requests, run.seconds, run.failed = parse_summary(done.stdout + done.stderr)
    except ValueError as error:
        run.error = str(error)
    return run


def run_wrk(
    url: str, body: bytes, headers: dict[str, str], *, connections: int, seconds: float, server_cpu: Callable[[], float]
) -> Measurement:
    """Non-streaming chat completions on `connections` keep-alive connections for `seconds`."""
    cpu_before = server_cpu()
    run = wrk(url, body, headers, connections=connections, seconds=seconds)
    measurement = Measurement(cpu_seconds=server_cpu() - cpu_before)
    if run.error:
        measurement.errors = 1
        measurement.reasons[run.error[:80]] += 1
        return measurement
    measurement.elapsed = run.seconds
    measurement.completed, measurement.errors = run.requests - run.failed, run.failed
    if run.failed:
        measurement.reasons["wrk: socket errors or non-2xx"] += run.failed
    return measurement
