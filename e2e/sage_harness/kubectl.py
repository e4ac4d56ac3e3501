"""`kubectl` as a user types it, pointed at the test control plane."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sage_harness.waiting import wait_until


class KubectlError(AssertionError):
    """kubectl exited non-zero where the test expected success."""


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            msg = f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            raise KubectlError(msg)
        return result

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))

    def apply(self, manifest: str, namespace: str | None = None) -> str:
        ns = ["-n", namespace] if namespace else []
        return self("apply", *ns, "-f", "-", stdin=manifest)


def apply_crds(kubectl: Kubectl, folder: Path, timeout: float = 60) -> None:
    """Applies the CRDs in `folder` and waits until the API server serves them (Established).
    Polled: `kubectl wait` errors instead of waiting when a new CRD has no conditions yet."""
    kubectl("apply", "-f", str(folder))
    names = [line.split("/", 1)[1] for line in kubectl("get", "-f", str(folder), "-o", "name").split()]

    def established() -> bool:
        for name in names:
            conditions = kubectl.json("get", "crd", name).get("status", {}).get("conditions") or []
            if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return False
        return True

    wait_until(established, f"the CRDs {', '.join(names)} to be established", timeout)
