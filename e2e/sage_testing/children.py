"""What every server process a test starts has in common: waiting until an HTTP path answers 200
(or the process dies), and stopping it gracefully."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_http_ok(process: subprocess.Popen[bytes], url: str, timeout: float) -> str | None:
    """Polls `url` until it answers 200. Returns None then, or why it never did."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                return f"exited with code {code}"
            try:
                if client.get(url).status_code == 200:
                    return None
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    return f"no 200 from {url} after {timeout:.0f}s"


def terminate(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
