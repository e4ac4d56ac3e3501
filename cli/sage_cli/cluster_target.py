"""The cluster target: engines and fine-tunes as LLMEngine and FinetuneJob objects in the current
kubeconfig context's namespace, through sage_kube. Building objects and reading rows is pure
(`sage_cli.cluster_objects`); this module does the talking."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sage_api.finetune_request import FinetuneRequest
from sage_api.names import (
    ANNOTATION_PAUSED_BY,
    API_VERSION,
    ENGINE,
    FINETUNE,
    LABEL_ENGINE,
    LABEL_FINETUNEJOB,
    ResourceNames,
)
from sage_cli import cluster_objects as objects
from sage_cli.targets import EngineRow, FinetuneState, TargetError
from sage_kube.client import KubeClient
from sage_kube.config import ConfigError, KubeConfig, from_kubeconfig
from sage_kube.errors import ApiError, Conflict, NotFound, Unreachable
from sage_kube.paths import resource_path

LOG_QUEUE_LINES = 256


def kubeconfig_path(explicit: str | None = None) -> Path:
    """The kubeconfig kubectl would read: `explicit`, else the first file of $KUBECONFIG, else
    ~/.kube/config. Raises TargetError naming what was tried."""
    if explicit:
        candidates, tried = [Path(explicit).expanduser()], f"--kubeconfig {explicit}"
    elif variable := os.environ.get("KUBECONFIG"):
        candidates = [Path(part).expanduser() for part in variable.split(os.pathsep) if part]
        tried = f"$KUBECONFIG={variable}"
    else:
        candidates, tried = [Path.home() / ".kube" / "config"], str(Path.home() / ".kube" / "config")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    msg = f"no kubeconfig found (tried {tried}); give --kubeconfig or set KUBECONFIG"
    raise TargetError(msg)


def _context_config(path: Path, context: str | None) -> tuple[str, KubeConfig]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
        name = context or document.get("current-context")
        if not name:
            msg = f"kubeconfig {path} has no current-context; give --context"
            raise TargetError(msg)
        return str(name), from_kubeconfig(path, str(name))
    except (ConfigError, OSError, ValueError, yaml.YAMLError) as error:
        raise TargetError(str(error)) from None
    except (KeyError, TypeError) as error:
        msg = f"kubeconfig {path}: context {context or '(current)'} refers to a missing entry {error}"
        raise TargetError(msg) from None


def _read_dataset(dataset: str) -> tuple[str, str]:
    """The ConfigMap key and text of a local dataset file."""
    path = Path(dataset).expanduser()
    if not path.is_file():
        msg = f"--dataset: {path} is not a file, nor pvc://<claim>/<path> or configmap://<name>/<key>"
        raise TargetError(msg)
    objects.check_upload_size(path.name, path.stat().st_size)
    try:
        return objects.dataset_key(path.name), path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        msg = f"--dataset: {path} is not UTF-8 text (a JSONL file)"
        raise TargetError(msg) from None


@dataclass(frozen=True)
class _Found:
    """An engine or fine-tune found by name."""

    names: ResourceNames
    item: dict[str, Any]

    @property
    def is_engine(self) -> bool:
        return self.names is ENGINE

    @property
    def noun(self) -> str:
        return "engine" if self.is_engine else "fine-tune"


class ClusterTarget:
    """A Target on a Kubernetes cluster. `target = await ClusterTarget.connect(...)`; close with
    `await target.aclose()` or `async with`."""

    def __init__(self, kube: KubeClient, *, context: str, namespace: str) -> None:
        self.kube = kube
        self.context = context
        self.namespace = namespace

    @classmethod
    async def connect(
        cls, context: str | None = None, namespace: str | None = None, kubeconfig: str | None = None
    ) -> ClusterTarget:
        """Reaches the API server of `context` (default: the kubeconfig's current context) and
        checks that it serves SAGE's resources. Raises TargetError."""
        name, config = _context_config(kubeconfig_path(kubeconfig), context)
        try:
            kube = KubeClient(config, field_manager="sage-cli")
        except (ssl.SSLError, ValueError) as error:
            msg = f"context {name}: unusable TLS settings for {config.server}: {error}"
            raise TargetError(msg) from None
        target = cls(kube, context=name, namespace=namespace or config.namespace)
        try:
            with target._talking():
                await kube.get(f"/apis/{API_VERSION}")
        except NotFound:
            await kube.aclose()
            msg = f"the cluster of context {name} ({config.server}) does not serve {API_VERSION}: install SAGE's CRDs"
            raise TargetError(msg) from None
        except TargetError:
            await kube.aclose()
            raise
        return target

    async def __aenter__(self) -> ClusterTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.kube.aclose()

    @property
    def description(self) -> str:
        return f"cluster: context {self.context}, namespace {self.namespace} ({self.kube.config.server})"

    @contextlib.contextmanager
    def _talking(self, sending: str | None = None) -> Iterator[None]:
        """An unreachable server or an unexpected error Status as one TargetError line; NotFound
        and Conflict pass, for the caller to say what they mean. With `sending` (the object
        sent, "LLMEngine qwen"), a 400 or 422 is the server's validation refusing it."""
        try:
            yield
        except Unreachable as error:
            detail = str(error) or type(error).__name__
            msg = f"cannot reach the API server of context {self.context} at {self.kube.config.server}: {detail}"
            raise TargetError(msg) from error
        except ApiError as error:
            if error.status in {401, 403}:
                msg = f"the API server at {self.kube.config.server} refused context {self.context}: {error.message}"
                raise TargetError(msg) from error
            if isinstance(error, NotFound | Conflict):
                raise
            if sending and error.status in {400, 422}:
                raise TargetError(f"the cluster refused the {sending}: {error.message}") from error
            msg = f"the API server at {self.kube.config.server} answered {error.status}: {error.message}"
            raise TargetError(msg) from error

    def _path(self, names: ResourceNames, name: str | None = None, subresource: str | None = None) -> str:
        return resource_path(API_VERSION, names.plural, self.namespace, name, subresource)

    async def _find(self, name: str, *kinds: ResourceNames) -> _Found | None:
        for names in kinds or (ENGINE, FINETUNE):
            with self._talking(), contextlib.suppress(NotFound):
                return _Found(names, await self.kube.get(self._path(names, name)))
        return None

    async def _must_find(self, name: str, *kinds: ResourceNames) -> _Found:
        found = await self._find(name, *kinds)
        if found is None:
            what = "fine-tune" if kinds == (FINETUNE,) else "engine or fine-tune"
            msg = f"no {what} named {name} in namespace {self.namespace}"
            raise TargetError(msg)
        return found

    async def start_engine(self, manifest: dict[str, Any]) -> str:
        name = manifest["metadata"]["name"]
        body = manifest | {"metadata": manifest["metadata"] | {"namespace": self.namespace}}
        try:
            with self._talking(sending=f"{ENGINE.kind} {name}"):
                await self.kube.create(self._path(ENGINE), body)
        except NotFound:
            raise self._no_namespace() from None
        except Conflict:
            return await self._start_again(name, manifest["spec"])
        return f"created {ENGINE.kind} {name} in namespace {self.namespace}"

    def _no_namespace(self) -> TargetError:
        return TargetError(f"namespace {self.namespace} does not exist (context {self.context})")

    async def _start_again(self, name: str, wanted: dict[str, Any]) -> str:
        """An engine of that name exists: start it again if it is stopped and serves the same model."""
        found = await self._must_find(name, ENGINE)
        metadata, spec = found.item["metadata"], found.item.get("spec") or {}
        replicas = int(wanted.get("replicas", 1))
        if metadata.get("deletionTimestamp"):
            msg = f"engine {name} is being deleted; start it again once it is gone"
            raise TargetError(msg)
        if paused_by := (metadata.get("annotations") or {}).get(ANNOTATION_PAUSED_BY):
            msg = f"engine {name} is paused while the fine-tune {paused_by} trains; it is given back when that ends"
            raise TargetError(msg)
        if spec.get("replicas", 1) != 0:
            msg = f"an engine named {name} already exists in namespace {self.namespace} and is running"
            raise TargetError(msg)
        if spec.get("model") != wanted.get("model"):
            msg = (
                f"a stopped engine named {name} serves {spec.get('model')}, not {wanted.get('model')}: "
                f"`sage llm engine stop {name} --delete` it first, or give another --name"
            )
            raise TargetError(msg)
        with self._talking():
            await self.kube.patch(self._path(ENGINE, name, "scale"), {"spec": {"replicas": replicas}})
        return f"started {name} again ({replicas} replica{'s' if replicas != 1 else ''})"

    async def start_finetune(self, request: FinetuneRequest) -> str:
        local = objects.remote_dataset(request.dataset) is None
        key, text = await asyncio.to_thread(_read_dataset, request.dataset) if local else ("", "")
        source = (
            f"{objects.CONFIGMAP}{objects.dataset_config_map_name(request.name)}/{key}" if local else request.dataset
        )
        manifest = objects.finetune_manifest(request, dataset_source=source)
        manifest["metadata"]["namespace"] = self.namespace
        try:
            with self._talking(sending=f"{FINETUNE.kind} {request.name}"):
                job = await self.kube.create(self._path(FINETUNE), manifest)
        except NotFound:
            raise self._no_namespace() from None
        except Conflict:
            msg = f"a fine-tune named {request.name} already exists in namespace {self.namespace}"
            raise TargetError(msg) from None
        done = f"created {FINETUNE.kind} {request.name} in namespace {self.namespace}"
        if not local:
            return done
        config_map = objects.dataset_config_map(job, key=key, text=text)
        config_map_name = config_map["metadata"]["name"]
        try:
            with self._talking(sending=f"ConfigMap {config_map_name}"):
                await self.kube.apply(resource_path("v1", "configmaps", self.namespace, config_map_name), config_map)
        except (TargetError, ApiError) as error:
            with self._talking(), contextlib.suppress(NotFound):
                await self.kube.delete(self._path(FINETUNE, request.name))  # no job without its data
            if isinstance(error, TargetError):
                raise
            msg = f"could not upload the dataset as ConfigMap {config_map_name}: {error.message}"
            raise TargetError(msg) from error
        return f"{done} (dataset uploaded as ConfigMap {config_map_name})"

    async def rows(self) -> list[EngineRow]:
        with self._talking():
            engines, jobs = await asyncio.gather(
                self.kube.list(self._path(ENGINE)), self.kube.list(self._path(FINETUNE))
            )
        return objects.rows(engines.get("items") or [], jobs.get("items") or [])

    async def stop(self, name: str, *, delete: bool) -> str:
        found = await self._must_find(name)
        with self._talking(), contextlib.suppress(NotFound):
            if not found.is_engine or delete:
                await self.kube.delete(self._path(found.names, name))
                return f"deleted {found.noun} {name}"
            if (found.item.get("spec") or {}).get("replicas", 1) == 0:
                return f"{name} is already stopped (`--delete` removes it)"
            await self.kube.patch(self._path(ENGINE, name, "scale"), {"spec": {"replicas": 0}})
            return f"stopped {name} (scaled to 0; `--delete` removes it)"
        msg = f"no engine or fine-tune named {name} in namespace {self.namespace}"  # gone meanwhile
        raise TargetError(msg)

    async def logs(self, name: str, *, follow: bool) -> AsyncIterator[str]:
        found = await self._must_find(name)
        label = LABEL_ENGINE if found.is_engine else LABEL_FINETUNEJOB
        with self._talking():
            listed = await self.kube.list(resource_path("v1", "pods", self.namespace), label_selector=f"{label}={name}")
        pods = sorted(listed.get("items") or [], key=lambda pod: str(pod["metadata"]["name"]))
        if not pods:
            phase = objects.phase_of(found.item.get("status") or {})
            msg = f"no pods for {name} yet (phase {phase})"
            raise TargetError(msg)
        params = {"follow": "true"} if follow else {}
        sources = {str(pod["metadata"]["name"]): self._pod_log(pod, params) for pod in pods}
        async for line in merge_lines(sources):
            yield line

    async def _pod_log(self, pod: dict[str, Any], params: dict[str, str]) -> AsyncGenerator[str, None]:
        """One pod's log; a log the server cannot give (the pod is not running yet) is one line saying why."""
        if note := objects.no_log_yet(pod):
            yield note
            return
        name = str(pod["metadata"]["name"])
        path = resource_path("v1", "pods", self.namespace, name, "log")
        try:
            async for line in self.kube.stream_lines(path, params):
                yield line
        except ApiError as error:
            yield f"(no log from {name}: {error.message})"
        except Unreachable as error:
            yield f"(log of {name} cut off: {error or type(error).__name__})"

    async def finetune_state(self, name: str) -> FinetuneState:
        found = await self._must_find(name, FINETUNE)
        return objects.finetune_state(found.item)


@dataclass(frozen=True)
class _Ended:
    error: Exception | None = None


async def merge_lines(sources: Mapping[str, AsyncGenerator[str, None]]) -> AsyncGenerator[str, None]:
    """The lines of every source as they come, each prefixed with its source's name when there
    is more than one. An error of a source is raised once the lines before it are through; closing
    the iterator stops every source."""
    many = len(sources) > 1
    queue: asyncio.Queue[str | _Ended] = asyncio.Queue(maxsize=LOG_QUEUE_LINES)

    async def pump(source: str, lines: AsyncGenerator[str, None]) -> None:
        error: Exception | None = None
        try:
            async with contextlib.aclosing(lines):
                async for line in lines:
                    await queue.put(objects.log_line(source, line, many=many))
        except Exception as caught:  # handed to the reader, which raises it
            error = caught
        await queue.put(_Ended(error))

    tasks = [asyncio.create_task(pump(source, lines)) for source, lines in sources.items()]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if not isinstance(item, _Ended):
                yield item
                continue
            running -= 1
            if item.error is not None:
                raise item.error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
