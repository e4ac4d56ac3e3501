"""Real engine server processes for tests: `python -m sage_engine` on a free loopback port.

    with EngineProcess("deterministic", "echo") as engine:
        httpx.get(f"{engine.base_url}/v1/models")

`start()` waits for `/health` and, when the engine exits or does not turn healthy in time, raises
`EngineStartError` carrying the engine's log, so a failing test shows why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from sage_testing.children import terminate, wait_http_ok
from sage_testing.envtest import free_port, source_pythonpath


class EngineStartError(RuntimeError):
    """The engine exited or did not become healthy; the message ends with its log."""


@dataclass
class EngineProcess:
    """One engine process. Every option maps to a `python -m sage_engine` flag."""

    backend: str
    model: str
    served_model_name: str | None = None
    aliases: Sequence[str] = ()
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    threads: int = 1
    startup_timeout: float = 180.0
    host: str = "127.0.0.1"
    wrapper: Sequence[str] = ()
    """A command prefix, e.g. `ip netns exec <pod>` to run the engine inside a test pod network."""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log_file: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return self.served_model_name or self.model

    def command(self) -> list[str]:
        args = [*self.wrapper, sys.executable, "-m", "sage_engine", "--backend", self.backend, "--model", self.model]
        args += ["--host", self.host, "--port", str(self.port), "--threads", str(self.threads)]
        if self.served_model_name:
            args += ["--served-model-name", self.served_model_name]
        for alias in self.aliases:
            args += ["--alias", alias]
        return [*args, *self.extra_args]

    def launch(self) -> Self:
        """Start the process without waiting for it to be healthy."""
        if self.port == 0:
            self.port = free_port()
        handle, name = tempfile.mkstemp(prefix=f"sage-engine-{self.port}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        self._log_file = self.log_path.open("wb")
        environment = {
            **os.environ,
            "PYTHONPATH": source_pythonpath(),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "SAGE_ENGINE_TERMINATION_LOG": str(self.log_path.with_suffix(".termination")),
            **self.env,
        }
        self.process = subprocess.Popen(
            self.command(), stdout=self._log_file, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        return self

    def start(self) -> Self:
        """Start and wait until `/health` answers 200."""
        self.launch()
        self.wait_healthy()
        return self

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def termination_message(self) -> str:
        path = self.log_path.with_suffix(".termination") if self.log_path else None
        return path.read_text() if path is not None and path.exists() else ""

    def _fail(self, why: str) -> EngineStartError:
        arguments = " ".join(self.command()[len(self.wrapper) + 2 :])
        return EngineStartError(f"engine {arguments}: {why}\n--- engine log ---\n{self.log()[-6000:]}")

    def wait_healthy(self, timeout: float | None = None) -> None:
        assert self.process is not None, "launch() first"
        failure = wait_http_ok(self.process, f"{self.base_url}/health", timeout or self.startup_timeout)
        if failure is not None:
            raise self._fail(f"never healthy: {failure}")

    def wait_exit(self, timeout: float = 120.0) -> int:
        """For engines expected to stop on their own (a model that cannot load)."""
        assert self.process is not None, "launch() first"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"still running after {timeout:.0f}s") from None

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 10 s; removes the log (failures already quoted it)."""
        terminate(self.process)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path.with_suffix(".termination").unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
