"""Commands typed as a user types them: `bash -c LINE` in the repository, with the kubectl and
helm built beside kube-apiserver first on PATH, KUBECONFIG at the test cluster, and Helm's own
folders in a throwaway home (never the user's)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sage_harness.repo import REPO_ROOT


@dataclass(frozen=True)
class UserShell:
    binaries: Path
    kubeconfig: Path
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sage-user-")))

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        env["PATH"] = f"{self.binaries}{os.pathsep}{env.get('PATH', '')}"
        for kind in ("CACHE", "CONFIG", "DATA"):
            env[f"HELM_{kind}_HOME"] = str(self.home / "helm" / kind.lower())
        return env

    def run(self, line: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`line` in bash (pipefail), from the repository root; never raises on failure."""
        return subprocess.run(
            ["bash", "-o", "pipefail", "-c", line],
            cwd=REPO_ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
