"""Real engine server processes: `python -m sage_engine` on a free loopback port.

    with EngineProcess("deterministic", "echo") as engine:
        httpx.get(f"{engine.base_url}/v1/models")

`start()` waits for `/health`; when the engine exits or does not turn healthy in time it raises
a ProcessError carrying the engine's log, so a failing test shows why.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from sage_harness.net import free_port
from sage_harness.process import ManagedProcess
from sage_harness.repo import source_pythonpath


class EngineProcess(ManagedProcess):
    """One engine process. Every option maps to a `python -m sage_engine` flag."""

    def __init__(
        self,
        backend: str,
        model: str,
        *,
        served_model_name: str | None = None,
        aliases: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        threads: int = 1,
        startup_timeout: float = 180.0,
        host: str = "127.0.0.1",
        wrapper: Sequence[str] = (),
        port: int = 0,
    ) -> None:
        super().__init__(f"engine-{served_model_name or backend}")
        self.backend, self.model = backend, model
        self.served_model_name, self.aliases, self.extra_args = served_model_name, tuple(aliases), tuple(extra_args)
        self.threads, self.startup_timeout, self.host = threads, startup_timeout, host
        self.wrapper = tuple(wrapper)
        """A command prefix, e.g. `ip netns exec <pod>` to run the engine inside a test pod network."""
        self.port = port or free_port()
        self.env = {
            "PYTHONPATH": source_pythonpath(),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **(env or {}),
        }

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        args = [*self.wrapper, sys.executable, "-m", "sage_engine", "--backend", self.backend, "--model", self.model]
        args += ["--host", self.host, "--port", str(self.port), "--threads", str(self.threads)]
        if self.served_model_name:
            args += ["--served-model-name", self.served_model_name]
        for alias in self.aliases:
            args += ["--alias", alias]
        return [*args, *self.extra_args]

    def environment(self) -> dict[str, str]:
        return {"SAGE_ENGINE_TERMINATION_LOG": str(self.termination_log), **super().environment()}

    @property
    def termination_log(self) -> Path:
        assert self.log_path is not None, "launch() first"
        return self.log_path.with_suffix(".termination")

    def ready(self) -> None:
        self.wait_healthy()

    def wait_healthy(self, timeout: float | None = None) -> None:
        self.wait_http_ok(f"{self.base_url}/health", timeout or self.startup_timeout)

    def termination_message(self) -> str:
        return self.termination_log.read_text() if self.log_path and self.termination_log.exists() else ""

    def stop(self, grace: float = 10.0) -> None:
        """Stops the engine and removes its log (failures already quoted it)."""
        super().stop(grace)
        if self.log_path is not None:
            self.termination_log.unlink(missing_ok=True)
        self.remove_log()
