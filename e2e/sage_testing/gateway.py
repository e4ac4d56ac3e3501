"""Real gateway (and sage-edge) processes for tests, on a free loopback port.

    with GatewayProcess(env={"SAGE_GATEWAY_DISCOVERY": "static", ...}) as gateway:
        httpx.get(f"{gateway.base_url}/v1/models")

`start()` waits until `/readyz` answers 200 (discovery synced) and raises with the log when the
process exits or never turns ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from sage_testing.envtest import REPO_ROOT, free_port

SOURCE_FOLDERS = ("operator", "gateway", "images/engine", "images/finetune", "e2e")


class GatewayStartError(RuntimeError):
    """The gateway exited or did not become ready; the message ends with its log."""


def source_pythonpath() -> str:
    ours = [str(REPO_ROOT / folder) for folder in SOURCE_FOLDERS]
    existing = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*ours, existing] if existing else ours)


@dataclass
class GatewayProcess:
    """`python -m sage_gateway` (or any module taking `--port`), configured through `env`."""

    env: Mapping[str, str] = field(default_factory=dict)
    module: str = "sage_gateway"
    args: Sequence[str] = ()
    ready_path: str = "/readyz"
    startup_timeout: float = 60.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log_file: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port), *self.args]

    def launch(self) -> Self:
        if self.port == 0:
            self.port = free_port()
        handle, name = tempfile.mkstemp(prefix=f"sage-{self.module.replace('.', '-')}-{self.port}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        self._log_file = self.log_path.open("wb")
        environment = {**os.environ, "PYTHONPATH": source_pythonpath(), "HF_HUB_OFFLINE": "1", **self.env}
        self.process = subprocess.Popen(
            self.command(), stdout=self._log_file, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        return self

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def _fail(self, why: str) -> GatewayStartError:
        return GatewayStartError(f"{' '.join(self.command()[1:])}: {why}\n--- log ---\n{self.log()[-6000:]}")

    def wait_ready(self, timeout: float | None = None) -> None:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code is not None:
                    raise self._fail(f"exited with code {code} before becoming ready")
                try:
                    if client.get(f"{self.base_url}{self.ready_path}").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise self._fail(f"not ready after {timeout or self.startup_timeout:.0f}s")

    def start(self) -> Self:
        self.launch()
        self.wait_ready()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
