"""The SAGE operator as a real process (`python -m sage_operator`) against a control plane, for
tests and the operator benchmark."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from sage_harness.net import free_port
from sage_harness.process import ManagedProcess
from sage_harness.repo import source_pythonpath
from sage_harness.waiting import wait_until

STARTED = "sage-operator started"
"""What the operator logs once its caches are filled and its controllers run."""


class OperatorProcess(ManagedProcess):
    """Start, stop and restart the operator; its log goes to `log_path`. The liveness endpoint gets
    a free port, so that several operators can run at once."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__("operator", log_path=log_path)
        self.kubeconfig, self.args, self.startup_timeout = kubeconfig, tuple(args), startup_timeout
        self.health_port = free_port()
        self.env = {
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": source_pythonpath(),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
            "SAGE_OPERATOR_HEALTH_PORT": str(self.health_port),
        }

    def command(self) -> list[str]:
        return [sys.executable, "-m", "sage_operator", *self.args]

    def ready(self) -> None:
        """Until its liveness endpoint answers (kopf runs) and its controllers have started."""
        self.wait_http_ok(f"http://127.0.0.1:{self.health_port}/healthz", self.startup_timeout)
        wait_until(lambda: STARTED in self.log(since_launch=True), f"{STARTED!r} in its log", self.startup_timeout)

    def restart(self) -> OperatorProcess:
        self.stop()
        return self.start()
