"""`helm` as a user types it: the binary built from Go modules beside kube-apiserver, with its
own throwaway config/cache/data folders so tests never read or write the user's Helm setup."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sage_harness.repo import REPO_ROOT

CHART = REPO_ROOT / "charts" / "sage"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
"""Values that turn every option of the chart on."""
Manifest = dict[str, Any]


class HelmError(AssertionError):
    """helm exited non-zero where the test expected success."""


def parse_manifests(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML stream, empty documents dropped."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = find(objects, kind, name)
    return found


def env_of(deployment: Manifest) -> dict[str, str]:
    """The literal environment of a Deployment's one container ("" for a variable from a reference)."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@dataclass(frozen=True)
class Helm:
    binary: Path
    kubeconfig: Path | None = None
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sage-helm-")))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for kind in ("CACHE", "CONFIG", "DATA"):
            env[f"HELM_{kind}_HOME"] = str(self.home / kind.lower())
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=300, check=False, env=self._env()
        )
        if check and result.returncode != 0:
            msg = f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            raise HelmError(msg)
        return result

    def __call__(self, *args: str) -> str:
        return self.run(*args).stdout

    def template(self, *args: str, release: str = "sage", namespace: str = "sage-system") -> list[dict[str, Any]]:
        """The objects `helm template` renders from the chart with extra `args` (`--set`, `-f`)."""
        return parse_manifests(self("template", release, str(CHART), "--namespace", namespace, *args))

    def install(self, release: str, namespace: str, *args: str) -> str:
        return self("install", release, str(CHART), "--namespace", namespace, "--create-namespace", *args)

    def manifest(self, release: str, namespace: str) -> list[dict[str, Any]]:
        """The objects an installed release created."""
        return parse_manifests(self("get", "manifest", release, "--namespace", namespace))

    def hooks(self, release: str, namespace: str) -> list[dict[str, Any]]:
        """The release's hooks (e.g. the `helm test` pod), rendered but not created by install."""
        return parse_manifests(self("get", "hooks", release, "--namespace", namespace))
