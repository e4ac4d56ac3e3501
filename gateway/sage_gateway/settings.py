"""The gateway's settings, all from environment variables prefixed `SAGE_GATEWAY_`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sage_api.ports import SagePorts
from sage_runtime.settings import CommaSeparated


class GatewaySettings(BaseSettings):
    """Every knob of the gateway. `python -m sage_gateway --help` lists them."""

    model_config = SettingsConfigDict(env_prefix="SAGE_GATEWAY_", extra="ignore", use_attribute_docstrings=True)

    discovery: Literal["kubernetes", "static"] = "kubernetes"
    """Where engines come from: a watch on the Kubernetes API, or a static list (local mode)."""

    static_engines_file: Path | None = None
    """static discovery: a YAML or JSON file with `engines: [{name, urls, aliases, adapters, kind, policy}]`."""

    static_engines: str | None = None
    """static discovery: the same document inline (YAML or JSON), used when no file is given."""

    namespaces: CommaSeparated = Field(default_factory=list)
    """kubernetes discovery: namespaces to watch, comma-separated; empty means every namespace."""

    shared_names: CommaSeparated = Field(default_factory=list)
    """Model names pooled across the engines (and namespaces) that claim them, comma-separated: the
    platform's explicit opt-in. Any other name belongs to its oldest claimant alone."""

    kubeconfig: str | None = None
    """kubernetes discovery: a kubeconfig path; default: $KUBECONFIG, ~/.kube/config, or in-cluster."""

    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes serving the one port, each with its own event loop (one per CPU the gateway
    may use; the chart derives it from the CPU limit). Routing state they must agree on (requests
    in flight per replica, held and routed requests per engine) is shared; each runs discovery."""

    host: str = "0.0.0.0"
    port: int = Field(default_factory=SagePorts.gateway)

    connect_timeout: float = Field(default=2.0, gt=0)
    """Seconds to open a connection to a replica before trying another."""

    read_timeout: float = Field(default=600.0, gt=0)
    """Seconds to wait for the next bytes from a replica (long generations need minutes)."""

    pool_timeout: float = Field(default=30.0, gt=0)
    """Seconds a request waits for a free connection when all `max_connections` are busy."""

    connect_retries: int = Field(default=2, ge=0, le=16)
    """Further replicas to try when connecting fails, before any byte went to the client."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Larger request bodies get 413."""

    max_buffered_bytes: int = Field(default=192 * 1024 * 1024, ge=1024 * 1024)
    """Bytes held for all requests at once (bodies, and 40x a body while it is parsed); beyond,
    requests get 503 with Retry-After instead of the gateway running out of memory."""

    max_inflight_requests: int = Field(default=4096, ge=1)
    """Requests in flight at once (streams included); beyond, 503 with Retry-After."""

    adapter_miss_seconds: float = Field(default=10.0, gt=0)
    """How long a replica that answered 404 for an adapter is passed over for that adapter."""

    retry_after_seconds: int = Field(default=5, ge=1)
    """Retry-After of the 503 a known model without a ready replica gets."""

    hold_seconds: float = Field(default=300.0, ge=0)
    """Kubernetes discovery: how long a request for an engine that scales from zero (minReplicas: 0
    with a maxReplicas) waits for a replica to turn ready; the gateway asks for one through the
    engine's scale subresource. 0 turns holding off (such requests get 503 at once)."""

    drain_seconds: float = Field(default=120.0, ge=0)
    """On SIGTERM: how long requests and streams in flight may go on before the rest are ended with
    an error event (the chart's terminationGracePeriodSeconds leaves room for it)."""

    prefix_chars: int = Field(default=256, ge=0)
    """Characters of the prompt that the prefix-hash policy hashes."""

    bounded_load_factor: float = Field(default=1.25, gt=1)
    """prefix-hash: a replica takes at most this factor times the average load."""

    max_connections: int = Field(default=1024, ge=1)
    """Connections to all replicas together."""

    expose_replica: bool = True
    """Name the replica that answered in an `x-sage-replica` response header (its pod address)."""

    auth: Literal["none", "api-keys"] = "none"
    """none: anyone who reaches the gateway uses every model. api-keys: every /v1 request needs a key
    (`Authorization: Bearer <key>` or `x-api-key`), from APIKey objects or the settings below."""

    api_keys_namespace: str | None = None
    """api-keys with kubernetes discovery: the namespace whose APIKey objects are watched (the
    gateway's own; default: the namespace of its ServiceAccount)."""

    api_keys: CommaSeparated = Field(default_factory=list)
    """api-keys: keys accepted for every model without limits (local mode), comma-separated; a
    sha256:<hex> entry is a key's hash."""

    api_keys_file: Path | None = None
    """api-keys: a YAML file of APIKey manifests (their models and limits apply), read at start."""

    redis_url: str | None = None
    """api-keys: share rate-limit counters with the other gateway replicas through this Redis
    (redis://[:password@]host:6379/0); unset: each replica limits on its own."""

    redis_password: str | None = None
    """api-keys: the Redis password, when not in the URL (the chart passes it from a Secret)."""

    redis_timeout: float = Field(default=0.25, gt=0)
    """Seconds an admission waits for Redis before this replica decides on its own."""

    redis_prefix: str = "sage:ratelimit:"
    """Prefix of the gateway's Redis keys (gateways of two installations may share one Redis)."""

    log_level: str = "info"

    @model_validator(mode="after")
    def _a_largest_body_fits_the_buffers(self) -> GatewaySettings:
        from sage_gateway.budget import PARSE_FACTOR  # noqa: PLC0415 - settings load before the app

        needed = self.max_body_bytes * (PARSE_FACTOR + 1)
        if self.max_buffered_bytes < needed:
            msg = (
                f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least {PARSE_FACTOR + 1} x "
                f"max_body_bytes ({needed}): a body is charged {PARSE_FACTOR} times its size while it is parsed"
            )
            raise ValueError(msg)
        return self
