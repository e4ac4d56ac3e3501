"""Engines and endpoints from their declarations: LLMEngine and EndpointSlice objects, or the
static list of local mode (pure)."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from sage_api.names import ANNOTATION_PAUSED_BY, GROUP, LABEL_ENGINE
from sage_gateway.registry import Endpoint, EngineInfo, PolicyName

ANNOTATION_ROUTING_POLICY = f"{GROUP}/routing-policy"
"""On an LLMEngine: least-inflight or prefix-hash (default: prefix-hash for llm, least-inflight
for embedding)."""

LABEL_SERVICE_NAME = "kubernetes.io/service-name"


def _policy(value: Any, where: str) -> PolicyName | None:
    if value is None or value == "":
        return None
    try:
        return PolicyName(value)
    except ValueError:
        accepted = ", ".join(policy.value for policy in PolicyName)
        msg = f"{where}: '{value}' is not a routing policy (accepted: {accepted})"
        raise ValueError(msg) from None


def engine_key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def engine_from_object(obj: dict[str, Any]) -> EngineInfo:
    """An LLMEngine object (as the API returns it) -> EngineInfo. Unknown policies fall back to
    the default rather than making the engine unroutable."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    name = str(metadata.get("name", ""))
    served = str(spec.get("servedModelName") or name)
    aliases = tuple(str(alias) for alias in spec.get("aliases") or ())
    adapters = [str(adapter.get("name")) for adapter in spec.get("adapters") or () if adapter.get("name")]
    # Adapters the engine reports as loaded route too, even before the spec lists them.
    for served_model in status.get("servedModels") or ():
        if served_model not in (served, *aliases, *adapters):
            adapters.append(str(served_model))
    try:
        policy = _policy((metadata.get("annotations") or {}).get(ANNOTATION_ROUTING_POLICY), ANNOTATION_ROUTING_POLICY)
    except ValueError:
        policy = None
    return EngineInfo(
        key=engine_key(metadata.get("namespace"), name),
        served_name=served,
        aliases=aliases,
        adapters=tuple(adapters),
        kind=str(spec.get("engineKind") or "llm"),
        phase=status.get("phase"),
        policy=policy,
        created=str(metadata.get("creationTimestamp") or ""),
        replicas=_count(spec.get("replicas", 1)),
        min_replicas=_count(spec.get("minReplicas")),
        max_replicas=_count(spec.get("maxReplicas")),
        paused_by=(metadata.get("annotations") or {}).get(ANNOTATION_PAUSED_BY) or None,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def slice_engine_key(obj: dict[str, Any]) -> str | None:
    """The engine an EndpointSlice belongs to: its `sage.ai/engine` label, else its Service's name."""
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    name = labels.get(LABEL_ENGINE) or labels.get(LABEL_SERVICE_NAME)
    return engine_key(metadata.get("namespace"), name) if name else None


def endpoints_from_slice(obj: dict[str, Any], default_port: int) -> list[Endpoint]:
    """One Endpoint per address. `ready` unset counts as ready, as the EndpointSlice API says."""
    ports = obj.get("ports") or []
    port = next((p.get("port") for p in ports if p.get("name") in ("http", None, "")), None)
    if port is None and ports:
        port = ports[0].get("port")
    port = int(port or default_port)
    family = obj.get("addressType", "IPv4")
    endpoints = []
    for endpoint in obj.get("endpoints") or []:
        ready = (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint.get("addresses") or []:
            host = f"[{address}]" if family == "IPv6" else address
            endpoints.append(Endpoint(f"http://{host}:{port}", ready is not False))
    return endpoints


class StaticEngine(BaseModel):
    """One engine of the static list. `urls` may be empty: the model is then known but not ready
    (503 rather than 404), which is how local mode reports an engine that failed to start."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Annotated[str, Field(min_length=1)]
    served_model_name: Annotated[str | None, Field(alias="servedModelName")] = None
    urls: Annotated[list[str], Field(validation_alias=AliasChoices("urls", "endpoints"))]
    aliases: list[str] = Field(default_factory=list)
    adapters: list[str] = Field(default_factory=list)
    kind: Annotated[str, Field(pattern="^(llm|embedding)$", validation_alias=AliasChoices("kind", "engineKind"))] = (
        "llm"
    )
    policy: PolicyName | None = None


class StaticEngineList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engines: list[StaticEngine]


def parse_static_engines(text: str, source: str) -> list[tuple[EngineInfo, list[Endpoint]]]:
    """The static list in `text` (YAML or JSON); a ValueError names the bad field and `source`."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        msg = f"{source}: not valid YAML or JSON: {error}"
        raise ValueError(msg) from None
    if isinstance(document, list):
        document = {"engines": document}
    try:
        listing = StaticEngineList.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()
        )
        msg = f"{source}: {problems}"
        raise ValueError(msg) from None
    return [
        (
            EngineInfo(
                key=engine_key("", engine.name),
                served_name=engine.served_model_name or engine.name,
                aliases=tuple(engine.aliases),
                adapters=tuple(engine.adapters),
                kind=engine.kind,
                phase="Ready",
                policy=engine.policy,
            ),
            [Endpoint(url.rstrip("/")) for url in engine.urls],
        )
        for engine in listing.engines
    ]
