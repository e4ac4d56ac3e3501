"""The repo's images, built here, into the node's containerd (e2e/node/FINDINGS.md, "Into the node").

The hand-over is a registry process on 127.0.0.1 (Debian's `docker-registry`) whose storage lives
in the user cache: `buildah push` sends only the blobs the registry lacks (gzip'd: buildah 1.28
ignores --disable-compression for registry destinations, its issue #3904), and containerd pulls
`docker.io/sage/<name>:<tag>` through its registry mirror configuration (a `hosts.toml` naming the
local registry), fetching only the layers it lacks. A code change therefore moves one small
layer, never PyTorch again.

Nothing is skipped on trust: the build is content-cached by buildah's layers, the push by the
registry's blobs, the pull by containerd's content store, and each step compares digests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from sage_api.ports import SagePorts
from sage_harness.lifecycle import Started
from sage_harness.net import port_if_free
from sage_harness.process import ManagedProcess, ProcessError
from sage_harness.repo import REPO_ROOT

NODE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sage" / "node"
BUILD_SCRIPT = REPO_ROOT / "images" / "build.sh"
BASE_IMAGE_SCRIPT = REPO_ROOT / "e2e" / "node" / "base-image.sh"
VERSION: str = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
# Where the kubelet's short names resolve: `sage/gateway:0.1.0` is `docker.io/sage/gateway:0.1.0`.
DEFAULT_DOMAIN = "docker.io"
TIMINGS = NODE_CACHE / "timings.jsonl"


class ImageError(RuntimeError):
    """An image could not be built, pushed or pulled."""


def record(event: str, seconds: float, **details: object) -> None:
    """One measured step, appended to the node cache's timings.jsonl (and printed)."""
    entry = {"event": event, "seconds": round(seconds, 2), "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **details}
    NODE_CACHE.mkdir(parents=True, exist_ok=True)
    with TIMINGS.open("a") as out:
        out.write(json.dumps(entry) + "\n")
    print(f"[node] {event}: {seconds:.1f}s {details}", file=sys.stderr)


def _run(argv: list[str], *, timeout: float = 1800, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if result.returncode != 0:
        msg = (
            f"{' '.join(argv[:4])} ... failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        raise ImageError(msg)
    return result.stdout


def base_image(*, pause: bool = False) -> str:
    """The local stand-in base (or pause) image's name; built once by e2e/node/base-image.sh."""
    return _run(["bash", str(BASE_IMAGE_SCRIPT), *(["--pause"] if pause else [])]).strip().splitlines()[-1]


def buildah_image_id(name: str) -> str:
    return _run(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", name]).strip()


@dataclass
class LocalRegistry(Started):
    """`docker-registry serve` on 127.0.0.1:<SagePorts.node_registry(), else a free port>, storage
    kept in the user cache so that blobs pushed by one run are there for the next. The same port
    each run matters: buildah's blob cache remembers what a registry holds by its address, and
    with a new address it compresses every layer again (~100 s for PyTorch's) to learn that the
    registry has them already. Use as a context manager."""

    storage: Path = NODE_CACHE / "registry"
    port: int = field(default_factory=lambda: port_if_free(SagePorts.node_registry()))
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sage-registry-")))
    _process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalRegistry:
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "warn", "accesslog": {"disabled": True}},
                    "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
                    "http": {"addr": self.address},
                }
            )
        )
        argv = ["docker-registry", "serve", str(config)]
        self._process = ManagedProcess("docker-registry", argv, log_path=self.workdir / "registry.log").launch()
        try:
            self._process.wait_http_ok(f"http://{self.address}/v2/", 30)
        except ProcessError as error:
            raise ImageError(str(error)) from None
        return self

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        accept = ", ".join(
            [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ]
        )
        response = httpx.head(
            f"http://{self.address}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}, timeout=10
        )
        return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None

    def push(self, local: str, repository: str, tag: str) -> str:
        """`buildah push` the local image to <registry>/<repository>:<tag>; the manifest digest."""
        digest_file = self.workdir / "digest"
        started = time.monotonic()
        _run([
            "buildah", "push", "--quiet", "--tls-verify=false",
            "--digestfile", str(digest_file), local, f"docker://{self.address}/{repository}:{tag}",
        ])  # fmt: skip
        digest = digest_file.read_text().strip()
        record("push", time.monotonic() - started, image=f"{repository}:{tag}", digest=digest[:19])
        return digest

    def hosts_toml(self) -> str:
        """containerd's mirror configuration for docker.io (certs.d/docker.io/hosts.toml): this
        registry answers pulls and resolves; no upstream server is named, none is reachable."""
        return f'[host."http://{self.address}"]\n  capabilities = ["pull", "resolve"]\n'

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        self._process = None
        shutil.rmtree(self.workdir, ignore_errors=True)  # config and log; the storage stays


class Puller(Protocol):
    """What a node offers: pull a reference into its containerd, and the digest it holds now."""

    def image_digest(self, reference: str) -> str | None: ...

    def pull(self, reference: str) -> None: ...

    def prune_images(self) -> None: ...


@dataclass
class NodeImages:
    """The repo's images on a node: `ensure("gateway")` builds (images/build.sh), pushes and pulls
    as needed and returns the reference pods use (`sage/gateway:<version>`). Once per session
    per image; each step skipped when the digests already agree."""

    node: Puller
    registry: LocalRegistry
    tag: str = VERSION
    _ready: dict[str, str] = field(default_factory=dict)

    def build(self, *names: str) -> None:
        started = time.monotonic()
        environment = {**os.environ, "SAGE_IMAGE_TAG": self.tag, "SAGE_IMAGE_PREFIX": "sage/"}
        _run(["bash", str(BUILD_SCRIPT), *names], timeout=3600, env=environment)
        record("build", time.monotonic() - started, images=list(names))

    def ship(self, local: str, repository: str, tag: str) -> str:
        """Push `local` as <repository>:<tag> unless the registry holds it already, then make
        the node's containerd hold the same digest as docker.io/<repository>:<tag>."""
        reference = f"{DEFAULT_DOMAIN}/{repository}:{tag}"
        stamp = NODE_CACHE / "pushed" / f"{repository.replace('/', '_')}_{tag}.json"
        image_id = buildah_image_id(local)
        digest = None
        if stamp.exists():
            known = json.loads(stamp.read_text())
            if known["image_id"] == image_id and self.registry.manifest_digest(repository, tag) == known["digest"]:
                digest = known["digest"]
        if digest is None:
            digest = self.registry.push(local, repository, tag)
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps({"image_id": image_id, "digest": digest}))
        if self.node.image_digest(reference) != digest:
            started = time.monotonic()
            self.node.pull(reference)
            record("pull", time.monotonic() - started, image=reference)
            held = self.node.image_digest(reference)
            if held != digest:
                msg = f"containerd holds {reference} at {held}, the registry at {digest}"
                raise ImageError(msg)
            self.node.prune_images()  # the version this tag pointed at before
        return reference

    def ensure(self, *names: str) -> list[str]:
        """The pod references (`sage/<name>:<tag>`) of `names`, each current on the node."""
        todo = [name for name in names if name not in self._ready]
        if todo:
            self.build(*todo)
            for name in todo:
                self.ship(f"localhost/sage/{name}:{self.tag}", f"sage/{name}", self.tag)
                self._ready[name] = f"sage/{name}:{self.tag}"
        return [self._ready[name] for name in names]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ready.values())
