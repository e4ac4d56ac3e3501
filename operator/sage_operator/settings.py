"""The operator's settings: one pydantic-settings class filled from `SAGE_OPERATOR_*` variables."""

from __future__ import annotations

import socket
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sage_api.engine import Backend
from sage_api.ports import SagePorts
from sage_runtime.settings import CommaSeparated

ENV_PREFIX = "SAGE_OPERATOR_"


class OperatorSettings(BaseSettings):
    """Everything the operator can be told; `python -m sage_operator --help` lists the variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    namespaces: CommaSeparated = Field(
        default_factory=list, description="Namespaces to watch, comma-separated; empty watches all namespaces"
    )
    engine_image: str = Field(
        default="sage/engine:0.1.0",
        description="Image of SAGE's engine server (transformers, sentence-transformers, deterministic)",
    )
    vllm_image: str = Field(
        default="vllm/vllm-openai:v0.33.0",
        description="Image for the vllm backend: the vLLM release whose flags the operator renders",
    )
    finetune_image: str = Field(
        default="sage/finetune:0.1.0", description="Image of the fine-tune runner (FinetuneJob pods)"
    )
    engine_images: dict[str, str] = Field(
        default_factory=dict,
        description='Per-backend image overrides as JSON, e.g. {"sentence-transformers": "my/st:1"}',
    )
    default_cpu: str = Field(default="1", description="CPU request of an engine pod whose spec sets none")
    default_memory: str = Field(default="2Gi", description="Memory request of an engine pod whose spec sets none")
    resync_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Every engine is reconciled at least this often, from the caches (the safety net; "
        "changes and drift of children arrive by watch)",
    )
    workers: int = Field(default=8, ge=1, le=256, description="Engines reconciled concurrently")
    engine_port: int = Field(
        default_factory=SagePorts.engine,
        ge=1,
        le=65535,
        description="Port the operator uses to reach engine pods (adapter loading); the container port stays fixed",
    )
    health_port: int = Field(
        default=SagePorts.OPERATOR_HEALTH,
        ge=0,
        le=65535,
        description="Port of the liveness endpoint GET /healthz (0 turns it off)",
    )
    engine_peers: list[dict[str, Any]] | None = Field(
        default=None,
        description="NetworkPolicyPeer objects (JSON) that alone may reach engine pods on the engine port; "
        "each engine gets a NetworkPolicy admitting them (unset: no policy; the chart sets the gateway and operator)",
    )
    shared_names: CommaSeparated = Field(
        default_factory=list,
        description="Model names pooled across the engines (and namespaces) claiming them (the gateway's "
        "SAGE_GATEWAY_SHARED_NAMES): no NameConflict for these",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="Key the engines' adapter-route credentials derive from (the chart keeps one in a Secret); "
        "unset: engines accept adapter changes from anyone who can reach them",
    )
    gateway_urls: CommaSeparated = Field(
        default_factory=list,
        description="Gateways whose GET /load the autoscaler reads: http://host:port, or "
        "dns+http://headless-service:port for every pod behind a headless Service (empty: no autoscaling on load)",
    )
    autoscale_seconds: float = Field(default=15.0, gt=0, description="How often the autoscaler reads the gateways")
    autoscale_window_seconds: float = Field(
        default=60.0, gt=0, description="The window the autoscaler averages the requests in flight over"
    )
    leader_lease: str | None = Field(
        default=None,
        description="namespace/name of the coordination.k8s.io Lease whose holder alone reconciles and autoscales; "
        "the other replicas stand by with filled caches (unset: this operator acts alone)",
    )
    leader_lease_seconds: float = Field(
        default=15.0, gt=0, description="How long a Lease its holder stopped renewing is respected before a take-over"
    )
    pod_name: str = Field(default_factory=socket.gethostname, description="This replica's identity in the Lease")
    adapter_retry_max_seconds: float = Field(
        default=60.0, gt=0, description="Longest back-off between attempts to load an adapter into a pod"
    )

    @field_validator("engine_images")
    @classmethod
    def _known_backends(cls, value: dict[str, str]) -> dict[str, str]:
        known = {backend.value for backend in Backend}
        if unknown := sorted(set(value) - known):
            msg = f"unknown backend(s) {unknown} in engine_images; known: {sorted(known)}"
            raise ValueError(msg)
        return value

    @field_validator("leader_lease")
    @classmethod
    def _namespace_and_name(cls, value: str | None) -> str | None:
        if value is not None and (value.count("/") != 1 or not all(value.split("/"))):
            msg = f"leader_lease must be namespace/name, not {value!r}"
            raise ValueError(msg)
        return value

    def image_for(self, backend: Backend) -> str:
        if backend.value in self.engine_images:
            return self.engine_images[backend.value]
        return self.vllm_image if backend is Backend.VLLM else self.engine_image
