"""The engine registry: engines and their endpoints in, routable endpoints by model name out (pure).

Discovery providers feed it; the proxy asks it where a model can go. Engines and endpoint groups
(an EndpointSlice, or a static list) arrive independently and in any order: a slice seen before
its engine waits for it, an engine without ready endpoints is known but not routable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class PolicyName(StrEnum):
    """Routing policies an engine can select."""

    LEAST_INFLIGHT = "least-inflight"
    PREFIX_HASH = "prefix-hash"


@dataclass(frozen=True)
class EngineInfo:
    """What the gateway needs to know about one engine."""

    key: str
    """Unique within the registry, e.g. `namespace/name`."""
    served_name: str
    aliases: tuple[str, ...] = ()
    adapters: tuple[str, ...] = ()
    kind: str = "llm"
    phase: str | None = None
    policy: PolicyName | None = None
    """None: the default for the engine's kind."""
    created: str = ""
    """metadata.creationTimestamp (RFC 3339, sorts as text); "" for static engines. Of engines
    claiming one name, the oldest owns it."""
    replicas: int | None = None
    """spec.replicas (None: static engines)."""
    min_replicas: int | None = None
    max_replicas: int | None = None
    paused_by: str | None = None
    """The FinetuneJob that scaled this engine to zero while it runs (annotation sage.ai/paused-by)."""

    @property
    def scales_from_zero(self) -> bool:
        """Autoscaled (it has maxReplicas) down to zero (minReplicas: 0): a request for it with no
        ready replica is held while one starts, rather than refused."""
        return self.max_replicas is not None and self.min_replicas == 0

    @property
    def namespace(self) -> str:
        """The namespace of a Kubernetes engine (its key is `namespace/name`); "" for static ones."""
        namespace, slash, _ = self.key.partition("/")
        return namespace if slash else ""

    @property
    def names(self) -> tuple[str, ...]:
        """Every model name that routes here, served name first."""
        seen: dict[str, None] = {self.served_name: None}
        for name in (*self.aliases, *self.adapters):
            seen.setdefault(name, None)
        return tuple(seen)

    @property
    def routing_policy(self) -> PolicyName:
        if self.policy is not None:
            return self.policy
        return PolicyName.LEAST_INFLIGHT if self.kind == "embedding" else PolicyName.PREFIX_HASH


@dataclass(frozen=True)
class Endpoint:
    """One replica: a base URL such as `http://10.0.0.7:8000`."""

    url: str
    ready: bool = True


@dataclass(frozen=True)
class Route:
    """Where a model can go: its engine and the URLs of its ready replicas (never empty)."""

    model: str
    engine: EngineInfo
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Unavailable:
    """The model is known but no replica is ready."""

    model: str
    engine: EngineInfo


@dataclass(frozen=True)
class Unknown:
    """No engine serves this name; `known` lists the names that exist."""

    model: str
    known: tuple[str, ...]


Resolution = Route | Unavailable | Unknown


@dataclass(frozen=True)
class ModelEntry:
    """One line of `GET /v1/models`."""

    id: str
    engine: str
    kind: str
    role: str
    """served, alias or adapter."""
    root: str
    """The engine's served name (the base model for adapters and aliases)."""
    namespace: str = ""
    """The engine's namespace ("" for static engines)."""


@dataclass
class EngineRegistry:
    """Engines and endpoint groups, with a name index rebuilt on the first lookup after a change
    (changes are rare, lookups are per request; the 2,000 changes of listing 1,000 engines and their
    slices cost one rebuild, not 2,000)."""

    _engines: dict[str, EngineInfo] = field(default_factory=dict)
    _groups: dict[str, dict[str, tuple[Endpoint, ...]]] = field(default_factory=dict)
    """engine key -> group key (e.g. a slice name) -> endpoints."""
    shared_names: frozenset[str] = frozenset()
    """Names the platform pools across engines (and namespaces): a request for one may go to a
    ready replica of any engine claiming it; the oldest claimant still describes it."""
    _owner: dict[str, str] = field(default_factory=dict)
    _ready: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _pooled: dict[str, tuple[str, ...]] = field(default_factory=dict)
    version: int = 0
    """Bumped on every change so that callers can cache what they derive from the registry."""
    on_change: Callable[[], None] | None = None
    """Called after every change (the gateway wakes requests held for a replica with it)."""
    _stale: bool = False

    def upsert_engine(self, engine: EngineInfo) -> None:
        self._engines[engine.key] = engine
        self._changed()

    def remove_engine(self, key: str) -> None:
        if self._engines.pop(key, None) is not None:
            self._changed()

    def set_endpoints(self, engine_key: str, group: str, endpoints: Iterable[Endpoint]) -> None:
        self._groups.setdefault(engine_key, {})[group] = tuple(endpoints)
        self._changed()

    def remove_endpoints(self, engine_key: str, group: str) -> None:
        groups = self._groups.get(engine_key)
        if groups is not None and groups.pop(group, None) is not None:
            if not groups:
                del self._groups[engine_key]
            self._changed()

    def engines(self) -> list[EngineInfo]:
        return sorted(self._engines.values(), key=lambda engine: engine.key)

    def ready_urls(self, engine_key: str) -> tuple[str, ...]:
        self._index()
        return self._ready.get(engine_key, ())

    def all_ready_urls(self) -> set[str]:
        self._index()
        return {url for urls in self._ready.values() for url in urls}

    def _changed(self) -> None:
        self.version += 1
        self._stale = True
        if self.on_change is not None:
            self.on_change()

    def _index(self) -> None:
        if self._stale:
            self._stale = False
            self._rebuild()

    def _rebuild(self) -> None:
        self._ready = {}
        for key, groups in self._groups.items():
            urls: dict[str, None] = {}
            for endpoints in groups.values():
                urls.update((endpoint.url, None) for endpoint in endpoints if endpoint.ready)
            self._ready[key] = tuple(sorted(urls))
        owners: dict[str, str] = {}
        pooled: dict[str, dict[str, None]] = {}
        for engine in sorted(self.engines(), key=lambda e: (e.created or "~", e.key)):
            for name in engine.names:
                owners.setdefault(name, engine.key)
                if name in self.shared_names:
                    pooled.setdefault(name, {}).update((url, None) for url in self._ready.get(engine.key, ()))
        self._owner = owners
        self._pooled = {name: tuple(sorted(urls)) for name, urls in pooled.items()}

    def owner(self, model: str) -> EngineInfo | None:
        """The engine that owns the name `model`: the oldest claiming it (then by key)."""
        self._index()
        key = self._owner.get(model)
        return self._engines[key] if key is not None else None

    def resolve(self, model: str) -> Resolution:
        """The engine owning `model`, with its ready replicas. Never another engine that claims
        the same name (another tenant's, maybe): an owner without ready replicas is Unavailable."""
        engine = self.owner(model)
        if engine is None:
            return Unknown(model, tuple(sorted(self._owner)))
        urls = self._pooled[model] if model in self._pooled else self._ready.get(engine.key)
        return Route(model, engine, urls) if urls else Unavailable(model, engine)

    def models(self, *, ready_only: bool = True) -> list[ModelEntry]:
        """Served names, aliases and adapters of the (ready) engines, each name once."""
        self._index()
        entries: dict[str, ModelEntry] = {}
        for engine in self.engines():
            if ready_only and not self._ready.get(engine.key):
                continue
            roles = [(engine.served_name, "served")]
            roles += [(alias, "alias") for alias in engine.aliases]
            roles += [(adapter, "adapter") for adapter in engine.adapters]
            for name, role in roles:
                if self._owner.get(name) == engine.key or name in self.shared_names:  # others' names are not ours
                    entries.setdefault(
                        name, ModelEntry(name, engine.key, engine.kind, role, engine.served_name, engine.namespace)
                    )
        return sorted(entries.values(), key=lambda entry: entry.id)
