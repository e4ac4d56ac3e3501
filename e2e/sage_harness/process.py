"""The one process helper: a child started in its own session with its output in a log file,
waited on (an HTTP path answering 200, or its exit), measured (RSS, CPU) and stopped gracefully
(SIGTERM to its process group, SIGKILL after a grace period). The engine, gateway, operator and
control-plane processes are each a `ManagedProcess` with their own command."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from sage_harness.waiting import WaitTimeout, wait_until


class ProcessError(RuntimeError):
    """The process exited, or never answered; the message ends with its log."""


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        inherit_env: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env or {})
        self.inherit_env = inherit_env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._own_log = False
        self._launched_at_byte = 0

    def command(self) -> list[str]:
        """The command line; subclasses build theirs from their options."""
        return self.argv

    def environment(self) -> dict[str, str]:
        return {**(os.environ if self.inherit_env else {}), **self.env}

    def launch(self) -> Self:
        """Start without waiting for anything."""
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix=f"sage-{self.name}-", suffix=".log")
            os.close(handle)
            self.log_path, self._own_log = Path(name), True
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._launched_at_byte = self._log.tell()
        self.process = subprocess.Popen(
            self.command(), env=self.environment(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def start(self) -> Self:
        """Start and wait until ready (`ready()`; nothing by default)."""
        self.launch()
        try:
            self.ready()
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self) -> None:
        """Subclasses wait for their readiness here."""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_http_ok(
        self, url: str, timeout: float, *, verify: ssl.SSLContext | bool = True, any_status: bool = False
    ) -> None:
        """Until GET `url` answers 200 (or anything at all, with `any_status`); ProcessError (with
        the log) if the process exits first or it never does."""
        with httpx.Client(timeout=2.0, verify=verify) as client:

            def answered() -> bool:
                if not self.running():
                    code = self.process.returncode if self.process else None
                    raise ProcessError(f"exited with code {code}")
                try:
                    status = client.get(url).status_code
                except httpx.TransportError:
                    return False
                return any_status or status == 200

            try:
                wait_until(answered, f"{self.name}: 200 from {url}", timeout, fatal=(ProcessError,))
            except WaitTimeout as error:
                raise self.failure(str(error)) from None
            except ProcessError as error:
                raise self.failure(str(error)) from None

    def wait_exit(self, timeout: float = 120.0) -> int:
        """For processes expected to stop on their own."""
        assert self.process is not None, "launch() first"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.failure(f"still running after {timeout:.0f}s") from None

    def failure(self, why: str) -> ProcessError:
        return ProcessError(f"{' '.join(self.command())}: {why}\n--- {self.name} log ---\n{self.log()[-6000:]}")

    def signal(self, signum: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds."""
        if self.running():
            self.signal(signal.SIGTERM)
            assert self.process is not None
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove_log(self) -> None:
        """Drop a log the harness made up (failures have quoted it by then)."""
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def log(self, *, since_launch: bool = False) -> str:
        """The log (a restarted process appends to it); `since_launch`: only the latest run's."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        raw = self.log_path.read_bytes()
        return raw[self._launched_at_byte if since_launch else 0 :].decode(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _status_kib(self, field: str) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        msg = f"{field} not found"
        raise RuntimeError(msg)

    def peak_rss_bytes(self) -> int:
        """The process's high-water resident set size (Linux /proc), while it runs."""
        return self._status_kib("VmHWM") * 1024

    def rss_bytes(self) -> int:
        """The process's resident set size now (Linux /proc), while it runs."""
        return self._status_kib("VmRSS") * 1024

    def open_files(self) -> int:
        """File descriptors the process holds open now (Linux /proc), while it runs."""
        assert self.process is not None
        return len(list(Path(f"/proc/{self.process.pid}/fd").iterdir()))

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
