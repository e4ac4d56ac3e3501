"""The SAGE operator as a real process (`python -m sage_operator`) against the test control plane,
for integration tests and the operator benchmark; plus `wait_until`, the polling helper tests use
instead of sleeps."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from sage_testing.envtest import free_port, source_pythonpath

T = TypeVar("T")
PYTHONPATH = source_pythonpath()


class WaitTimeout(AssertionError):
    """The condition did not hold in time; the message says what was awaited and what was last seen."""


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 60, interval: float = 0.1) -> T:
    """Polls `check` until it returns something truthy (which is returned). Exceptions count as
    'not yet' and the last one is reported on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as error:
            last = error
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}; last: {last!r}"
            raise WaitTimeout(msg)
        time.sleep(interval)


@dataclass
class OperatorProcess:
    """Start, stop and restart the operator; its log goes to `log_path`."""

    kubeconfig: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    health_port: int = field(default_factory=free_port)
    """The liveness endpoint's port: a free one, so that several operators can run at once."""
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> OperatorProcess:
        environment = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": PYTHONPATH,
            "PYTHONUNBUFFERED": "1",
            **self.env,
            "SAGE_OPERATOR_HEALTH_PORT": str(self.health_port),
        }
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sage_operator", *self.args],
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> OperatorProcess:
        self.stop()
        return self.start()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def peak_rss_bytes(self) -> int:
        """The process's high-water resident set size (Linux /proc), while it runs."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        msg = "VmHWM not found"
        raise RuntimeError(msg)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
