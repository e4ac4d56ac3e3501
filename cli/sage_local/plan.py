"""From LLMEngine manifests to the processes local mode starts (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sage_api.defaults import check_spec, embedding_flags, resolve_backend, served_model_name
from sage_api.engine import Backend, EngineKind
from sage_local.manifests import LoadedEngine, ManifestError


@dataclass(frozen=True)
class LocalEngine:
    """One engine process: what it serves and how it is started."""

    name: str
    served_name: str
    aliases: tuple[str, ...]
    kind: EngineKind
    backend: Backend
    model: str
    port: int
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    """Local mode runs one process per engine; 0 means the manifest asks for it stopped."""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.served_name, *self.aliases)


def resolve_model(model: str, manifest: Path) -> str:
    """Local mode reads models from the hub cache, hf:// ids, or paths relative to the manifest."""
    if model.startswith("pvc://"):
        msg = f"{manifest}: spec.model {model!r}: pvc:// needs a cluster; use a local path or a hub id"
        raise ManifestError(msg)
    if model.startswith(("./", "../")):
        return str((manifest.parent / model).resolve())
    return model


def plan_engines(engines: list[LoadedEngine], *, base_port: int, host: str, python: str) -> list[LocalEngine]:
    """Ports are handed out in manifest order from `base_port`."""
    return [
        plan_engine(loaded, port=base_port + index, host=host, python=python) for index, loaded in enumerate(engines)
    ]


def plan_engine(loaded: LoadedEngine, *, port: int, host: str, python: str) -> LocalEngine:
    """One engine's process on `port`; a ManifestError says why it cannot run locally."""
    spec = loaded.engine.spec
    try:
        check_spec(spec)
    except ValueError as error:
        msg = f"{loaded.source}: LLMEngine {loaded.name}: {error}"
        raise ManifestError(msg) from error
    backend = resolve_backend(spec)
    if backend is Backend.VLLM:
        msg = f"{loaded.source}: LLMEngine {loaded.name}: spec.backend vllm needs GPUs; local mode runs transformers"
        raise ManifestError(msg)
    served = served_model_name(spec, loaded.name)
    model = resolve_model(spec.model, loaded.source)
    aliases = tuple(spec.aliases or ())
    argv = [python, "-m", "sage_engine", "--backend", backend.value, "--model", model]
    argv += ["--served-model-name", served, "--host", host, "--port", str(port)]
    for alias in aliases:
        argv += ["--alias", alias]
    argv += embedding_flags(spec)
    argv += list(spec.args or ())
    env = {var.name: var.value for var in spec.env or () if var.value is not None}
    return LocalEngine(
        name=loaded.name,
        served_name=served,
        aliases=aliases,
        kind=spec.engine_kind,
        backend=backend,
        model=model,
        port=port,
        argv=tuple(argv),
        env=env,
        replicas=spec.replicas,
    )


def free_port(taken: set[int], base_port: int) -> int:
    """The lowest port from `base_port` that no engine of this control plane holds."""
    port = base_port
    while port in taken:
        port += 1
    return port


def example_request(gateway_url: str, engines: list[LocalEngine], *, keyed: bool = False) -> str:
    """A ready-to-paste curl for the first engine (with `keyed`, sending $SAGE_API_KEY)."""
    first = next((e for e in engines if e.kind is EngineKind.EMBEDDING), engines[0])
    if first.kind is EngineKind.EMBEDDING:
        route, body = "embeddings", f'{{"model": "{first.served_name}", "input": "SAGE runs on my laptop"}}'
    else:
        route = "chat/completions"
        body = f'{{"model": "{first.served_name}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
    auth = ' -H "Authorization: Bearer $SAGE_API_KEY"' if keyed else ""
    return f"curl -s {gateway_url}/v1/{route}{auth} -H 'Content-Type: application/json' -d '{body}'"
