"""Pure renderers: an LLMEngine (and the operator's settings) -> the Deployment and Service that
serve it, as plain dicts ready for server-side apply."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sage_api import names
from sage_api.defaults import embedding_flags
from sage_api.engine import Backend, EngineKind, LLMEngine, LLMEngineSpec
from sage_api.ports import SagePorts
from sage_operator.core.kinds import ENGINE_OWNER
from sage_operator.core.metadata import (
    child_labels,
    child_metadata,
    restricted_container_security,
    restricted_pod_security,
)
from sage_operator.engine.credentials import TOKEN_DIRECTORY, TOKEN_FILE, admin_secret_name
from sage_operator.engine.spec import gpus, model_names, resolve_backend
from sage_operator.finetune.serving import FinetuneAdapters
from sage_operator.settings import OperatorSettings

CONTAINER = "engine"
PORT_NAME = "http"
HEALTH_PATH = "/health"
LIVENESS_PATH = "/livez"
CACHE_MOUNT = "/cache"
ENGINE_CACHE_DIR = f"{CACHE_MOUNT}/sage"
"""SAGE's engine's own cache (SAGE_CACHE_DIR: ONNX exports) on the model cache's claim."""
MODELS_MOUNT = "/models"
ADAPTERS_MOUNT = "/adapters"
ADAPTER_LIST_DIRECTORY = "/etc/sage/adapters"
ADAPTER_LIST_KEY = "adapters.json"
# Scaling fields change the replica count, never the pods: they stay out of the spec hash.
SCALING_FIELDS = ("replicas", "minReplicas", "maxReplicas", "targetInflightRequests", "preemptible")
# Adapters are loaded into running pods through the runtime adapter API; a new one must not roll
# them (a new claim to mount changes the volumes, and so the pod template, by itself).
RUNTIME_FIELDS = ("adapters",)
# Model loading can take long (vLLM compiles graphs, downloads weights): the startup probe allows it.
STARTUP_BUDGET_SECONDS = {Backend.VLLM: 1800}
DEFAULT_STARTUP_BUDGET_SECONDS = 600
# Probed often while loading, so an engine is Ready soon after its model is (the budget stays).
PROBE_PERIOD_SECONDS = 2
# A stopping engine pod serves on while the endpoints drop it (preStop), then gets the drain time
# (SAGE_ENGINE_DRAIN_SECONDS) for the generations in flight, and a margin to exit.
PRESTOP_SECONDS = 5
DRAIN_SECONDS = 120
TERMINATION_GRACE_SECONDS = PRESTOP_SECONDS + DRAIN_SECONDS + 10
# vLLM's model runner per engine kind (`--runner`; its `auto` guesses from the architecture).
VLLM_RUNNERS = {EngineKind.LLM: "generate", EngineKind.EMBEDDING: "pooling"}
# The LoRA ranks vLLM can reserve room for (`--max-lora-rank`), and its default.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_LORA_RANK = 16


def engine_labels(name: str) -> dict[str, str]:
    return child_labels(ENGINE_OWNER, name)


def selector_labels(name: str) -> dict[str, str]:
    """Selects an engine's pods; the Deployment's selector is immutable, so it stays this small."""
    return {names.LABEL_ENGINE: name}


def selector_string(name: str) -> str:
    return ",".join(f"{key}={value}" for key, value in selector_labels(name).items())


def engine_account_name(engine_name: str) -> str:
    """The engine pods' own ServiceAccount (engine.isolation renders it)."""
    return f"{engine_name}-engine"


def endpoint_url(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc:{SagePorts.ENGINE}"


def spec_hash(spec: LLMEngineSpec) -> str:
    """A digest of everything in the spec that shapes the pods (not the replica count)."""
    wire = {key: value for key, value in spec.to_wire().items() if key not in SCALING_FIELDS + RUNTIME_FIELDS}
    return hashlib.sha256(json.dumps(wire, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _metadata(engine: LLMEngine, **extra: Any) -> dict[str, Any]:
    return child_metadata(ENGINE_OWNER, engine.metadata, **extra)


class _Volumes:
    """PVC volumes, one per claim however many things (model, adapters) live on it."""

    def __init__(self) -> None:
        self.volumes: list[dict[str, Any]] = []
        self.mounts: list[dict[str, Any]] = []
        self._by_claim: dict[str, str] = {}

    def claim_path(self, uri: str, root: str) -> str:
        """`pvc://claim/some/path` -> the path inside the container, mounting the claim read-only."""
        claim, _, inner = uri.removeprefix("pvc://").partition("/")
        mount = f"{root}/{claim}"
        if claim not in self._by_claim:
            volume = f"pvc-{len(self._by_claim)}"
            self._by_claim[claim] = volume
            self.volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        if not any(m["mountPath"] == mount for m in self.mounts):
            self.mounts.append({"name": self._by_claim[claim], "mountPath": mount, "readOnly": True})
        return f"{mount}/{inner}".rstrip("/")


def model_argument(model: str, volumes: _Volumes) -> str:
    if model.startswith("pvc://"):
        return volumes.claim_path(model, MODELS_MOUNT)
    return model.removeprefix("hf://")


def adapter_paths(spec: LLMEngineSpec, finetune_sources: Mapping[str, str] | None = None) -> dict[str, str]:
    """Adapter name -> the path the engine loads it from (inside the pod). An adapter made by a
    FinetuneJob is there once `finetune_sources` (its job's output, see finetune.serving) has it."""
    volumes = _Volumes()
    paths = {adapter.name: _adapter_path(adapter.source, volumes) for adapter in spec.adapters or [] if adapter.source}
    for name, source in (finetune_sources or {}).items():
        paths[name] = _adapter_path(source, volumes)
    return paths


def _adapter_path(source: str, volumes: _Volumes) -> str:
    if source.startswith("pvc://"):
        return volumes.claim_path(source, ADAPTERS_MOUNT)
    return source.removeprefix("hf://")


LORA_SLOTS = 4
"""LoRA slots every vLLM engine with adapters gets at least (vLLM's own default is 1): a few
adapter slots cost little GPU memory at the default rank, and adding adapters then never rolls pods."""


def _given(args: Sequence[str], flag: str) -> bool:
    """Whether `args` set `flag` (`--flag v` or `--flag=v`; vLLM reads `_` and `-` alike)."""
    spellings = {flag, "--" + flag[2:].replace("-", "_")}
    return any(arg.partition("=")[0] in spellings for arg in args)


def vllm_lora_flags(adapters: Collection[str], ranks: Iterable[int], args: Sequence[str] = ()) -> list[str]:
    """The LoRA flags of `vllm serve` for an engine that serves `adapters` (names), of which the
    fine-tuned ones have LoRA `ranks`. vLLM batches at most `--max-loras` adapters at once and keeps
    as many in CPU memory (default 1: with several adapters every switch reloads one from disk),
    and reserves room for ranks up to `--max-lora-rank` (default 16; a higher rank fails to load).
    At least LORA_SLOTS slots are reserved, so adapters added by hand up to that many are loaded
    into running pods without a restart. A flag the user sets in spec.args is left to them."""
    flags = ["--enable-lora"]
    if not _given(args, "--max-loras"):
        flags += ["--max-loras", str(max(len(adapters), LORA_SLOTS))]
    needed = max(ranks, default=0)
    if needed > VLLM_DEFAULT_LORA_RANK and not _given(args, "--max-lora-rank"):
        rank = next((rank for rank in VLLM_LORA_RANKS if rank >= needed), VLLM_LORA_RANKS[-1])
        flags += ["--max-lora-rank", str(rank)]
    return flags


def _command(
    engine: LLMEngine, backend: Backend, model: str, *, lora: bool, adapters: Collection[str], ranks: Iterable[int]
) -> list[str]:
    spec = engine.spec
    served = model_names(spec, engine.metadata["name"])
    port = str(SagePorts.ENGINE)
    args = list(spec.args or [])
    if backend is Backend.VLLM:
        command = ["vllm", "serve", model, "--served-model-name", *served, "--port", port]
        command += ["--runner", VLLM_RUNNERS[spec.engine_kind]]
        if lora:
            command += vllm_lora_flags(adapters, ranks, args)
        return command + args
    command = ["python", "-m", "sage_engine", "--backend", backend.value, "--model", model]
    command += ["--served-model-name", served[0]]
    for alias in served[1:]:
        command += ["--alias", alias]
    return command + embedding_flags(spec) + args


def _env(engine: LLMEngine, backend: Backend, *, lora: bool, admin: bool) -> list[dict[str, Any]]:
    spec = engine.spec
    env: dict[str, dict[str, Any]] = {}
    if backend is not Backend.VLLM:
        env["SAGE_ENGINE_PORT"] = {"value": str(SagePorts.ENGINE)}
        env["SAGE_ENGINE_DRAIN_SECONDS"] = {"value": str(DRAIN_SECONDS)}
        env["SAGE_ENGINE_ADAPTERS_FILE"] = {"value": f"{ADAPTER_LIST_DIRECTORY}/{ADAPTER_LIST_KEY}"}
        if admin:
            env["SAGE_ENGINE_ADMIN_TOKEN_FILE"] = {"value": TOKEN_FILE}
    elif lora:  # the adapter API (/v1/load_lora_adapter) exists only with it; the upstream image lacks it
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = {"value": "True"}
    if spec.cache:
        env["HF_HOME"] = {"value": CACHE_MOUNT}
        if backend is not Backend.VLLM:  # what SAGE's engine makes once (ONNX exports) outlives the pod too
            env["SAGE_CACHE_DIR"] = {"value": ENGINE_CACHE_DIR}
    if spec.hf_token_secret:
        ref = {"name": spec.hf_token_secret.name, "key": spec.hf_token_secret.key}
        env["HF_TOKEN"] = {"valueFrom": {"secretKeyRef": ref}}
    for variable in spec.env or []:  # the user's variables win over ours, by name
        wire = variable.to_wire()
        env[wire.pop("name")] = wire
    return [{"name": name, **value} for name, value in env.items()]


def _resources(spec: LLMEngineSpec, settings: OperatorSettings) -> dict[str, Any]:
    given = spec.resources
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    cpu = given.cpu if given and given.cpu is not None else None
    memory = given.memory if given and given.memory is not None else None
    requests["cpu"] = str(cpu) if cpu is not None else settings.default_cpu
    requests["memory"] = str(memory) if memory is not None else settings.default_memory
    if memory is not None:
        limits["memory"] = str(memory)
    if cpu is not None:
        limits["cpu"] = str(cpu)
    if given and given.gpus > 0:
        limits[given.gpu_resource_name] = str(given.gpus)
    return {"requests": requests, "limits": limits} if limits else {"requests": requests}


def _probe(backend: Backend, kind: str) -> dict[str, Any]:
    probe: dict[str, Any] = {"httpGet": {"path": HEALTH_PATH, "port": PORT_NAME}, "timeoutSeconds": 5}
    if kind == "startup":
        budget = STARTUP_BUDGET_SECONDS.get(backend, DEFAULT_STARTUP_BUDGET_SECONDS)
        return probe | {"periodSeconds": PROBE_PERIOD_SECONDS, "failureThreshold": budget // PROBE_PERIOD_SECONDS}
    if kind == "readiness":
        return probe | {"periodSeconds": 5, "failureThreshold": 3}
    # Liveness asks only whether the server answers at all (our engine's /livez: not loading, not
    # busy, not draining; vLLM, which has no such route: its port takes connections), and forgives
    # a minute of silence: an engine busy generating on every core is slow to answer, not dead,
    # and restarting it would lose every generation in flight.
    check: dict[str, Any] = (
        {"tcpSocket": {"port": PORT_NAME}}
        if backend is Backend.VLLM
        else {"httpGet": {"path": LIVENESS_PATH, "port": PORT_NAME}}
    )
    return check | {"timeoutSeconds": 10, "periodSeconds": 15, "failureThreshold": 4}


def render_engine_deployment(
    engine: LLMEngine, settings: OperatorSettings, finetuned: FinetuneAdapters | None = None
) -> dict[str, Any]:
    """The Deployment of `spec.replicas` engine pods; the pod template carries the spec hash so
    that only a change of the spec rolls the pods. `finetuned` (see finetune.serving) brings what
    FinetuneJobs will hand over later: their output claims are mounted, and vLLM is started with
    room for their adapters and ranks, so that the hand-off changes nothing in the pod template."""
    spec, name = engine.spec, engine.metadata["name"]
    finetuned = FinetuneAdapters() if finetuned is None else finetuned
    backend = resolve_backend(spec)
    volumes = _Volumes()
    model = model_argument(spec.model, volumes)
    for adapter in spec.adapters or []:
        if adapter.source:
            _adapter_path(adapter.source, volumes)
    for claim in finetuned.claims:
        volumes.claim_path(f"pvc://{claim}/", ADAPTERS_MOUNT)
    mounts = list(volumes.mounts)
    pod_volumes = list(volumes.volumes)
    if spec.cache:
        pod_volumes.append({"name": "cache", "persistentVolumeClaim": {"claimName": spec.cache.claim_name}})
        cache_mount = {"name": "cache", "mountPath": CACHE_MOUNT}
        mounts.append(cache_mount | ({"subPath": spec.cache.sub_path} if spec.cache.sub_path else {}))
    if backend is Backend.VLLM:
        pod_volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    else:  # SAGE's engine loads the listed adapters before it turns ready (vLLM cannot read the list)
        pod_volumes.append({"name": "adapter-list", "configMap": {"name": adapter_list_name(name)}})
        mounts.append({"name": "adapter-list", "mountPath": ADAPTER_LIST_DIRECTORY, "readOnly": True})
    if backend is not Backend.VLLM and settings.admin_key is not None:  # our engine checks it; vLLM cannot
        secret = admin_secret_name(name, settings.admin_key.get_secret_value())
        pod_volumes.append({"name": "admin", "secret": {"secretName": secret, "defaultMode": 0o440}})
        mounts.append({"name": "admin", "mountPath": TOKEN_DIRECTORY, "readOnly": True})
    lora = bool(spec.adapters or finetuned.claims or finetuned.incoming)
    adapters = {adapter.name for adapter in spec.adapters or []} | set(finetuned.incoming)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or settings.image_for(backend),
        "command": _command(engine, backend, model, lora=lora, adapters=adapters, ranks=finetuned.ranks),
        "ports": [{"name": PORT_NAME, "containerPort": SagePorts.ENGINE, "protocol": "TCP"}],
        "env": _env(engine, backend, lora=lora, admin=settings.admin_key is not None),
        "resources": _resources(spec, settings),
        "startupProbe": _probe(backend, "startup"),
        "readinessProbe": _probe(backend, "readiness"),
        "livenessProbe": _probe(backend, "liveness"),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "securityContext": restricted_container_security(),
    }
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        # An account of their own (no Role binds it); an engine never calls the Kubernetes API: no token.
        "serviceAccountName": engine_account_name(name),
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(),
    }
    if pod_volumes:
        pod_spec["volumes"] = pod_volumes
    # Replicas on different nodes where there are several (a soft rule: one node still takes them all).
    pod_spec["topologySpreadConstraints"] = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(name)},
        }
    ]
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [toleration.to_wire() for toleration in spec.tolerations]
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    digest = {names.ANNOTATION_SPEC_HASH: spec_hash(spec)}
    # GPU pods cannot count on a spare GPU for a surge pod: replace them one at a time instead.
    rolling = {"maxSurge": 0, "maxUnavailable": 1} if gpus(spec) > 0 else {"maxSurge": 1, "maxUnavailable": 0}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(engine, annotations=dict(digest)),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            "template": {
                "metadata": {"labels": engine_labels(name), "annotations": dict(digest)},
                "spec": pod_spec,
            },
        },
    }


def adapter_list_name(engine_name: str) -> str:
    return f"{engine_name}-adapters"


def render_engine_adapter_list(engine: LLMEngine, paths: Mapping[str, str]) -> dict[str, Any]:
    """The adapters a starting pod loads before it turns ready (`adapter_paths`), in a ConfigMap:
    a new adapter changes this, never the pod template (running pods get it through the adapter
    API, and the kubelet refreshes the mounted file for their restarts)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(engine, name=adapter_list_name(engine.metadata["name"])),
        "data": {ADAPTER_LIST_KEY: json.dumps(dict(sorted(paths.items())), sort_keys=True)},
    }


def render_engine_service(engine: LLMEngine) -> dict[str, Any]:
    """A ClusterIP Service on the engine port selecting the engine's pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(engine),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(engine.metadata["name"]),
            "ports": [{"name": PORT_NAME, "port": SagePorts.ENGINE, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
