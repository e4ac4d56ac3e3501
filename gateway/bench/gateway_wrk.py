"""Throughput from `wrk` (the Debian package, optional): a C load generator on one thread, so
that at 64 connections the figure is the server's, not the Python client's ceiling."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
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


def run_wrk(
    url: str, body: bytes, headers: dict[str, str], *, connections: int, seconds: float, server_cpu: Callable[[], float]
) -> Measurement:
    """Non-streaming chat completions on `connections` keep-alive connections for `seconds`."""
    with tempfile.TemporaryDirectory(prefix="sage-bench-wrk-") as folder:
        script = Path(folder) / "chat.lua"
        script.write_text(wrk_script(body, headers))
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
        command += ["-s", str(script), f"{url}/v1/chat/completions"]
        cpu_before = server_cpu()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        cpu_seconds = server_cpu() - cpu_before
    measurement = Measurement(cpu_seconds=cpu_seconds)
    try:
        requests, measurement.elapsed, failed = parse_summary(done.stdout + done.stderr)
    except ValueError as error:
        measurement.errors = 1
        measurement.reasons[str(error)[:80]] += 1
        return measurement
    measurement.completed, measurement.errors = requests - failed, failed
    if failed:
        measurement.reasons["wrk: socket errors or non-2xx"] += failed
    return measurement
