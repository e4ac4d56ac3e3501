"""Every port SAGE listens on or talks to, in one place.

Nothing else in the code base writes a literal port number: engines, the gateway, the edge
shell, local mode and the renderers all read them from here, and each can be overridden by an
environment variable named beside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    port = int(raw)
    if not 0 < port < 65536:
        msg = f"{name}={raw} is not a TCP port (1-65535)"
        raise ValueError(msg)
    return port


@dataclass(frozen=True)
class SagePorts:
    """Well-known ports. The container-side ports are fixed by contract; the host-side ones
    (local mode) are defaults that environment variables override."""

    # Inside a pod every engine (vLLM or ours) listens on this one port.
    ENGINE: Final[int] = 8000
    # The gateway's HTTP port (Service and local mode).
    GATEWAY: Final[int] = 8080
    # The operator's health/metrics probe port.
    OPERATOR_HEALTH: Final[int] = 8081
    # The sage-edge aggregator shell.
    EDGE: Final[int] = 8090
    # Local mode's control plane (`sage up`): the management API `sage llm ...` talks to, on
    # the loopback address only.
    CONTROL: Final[int] = 8089
    # Local mode: engine processes get consecutive ports from here.
    LOCAL_ENGINE_BASE: Final[int] = 18000
    # The test node's image hand-over registry (e2e). Fixed, so that buildah's blob cache, which
    # remembers blobs per registry address, knows what the registry holds from one run to the next.
    NODE_REGISTRY: Final[int] = 5055

    @staticmethod
    def gateway() -> int:
        return _env_port("SAGE_GATEWAY_PORT", SagePorts.GATEWAY)

    @staticmethod
    def engine() -> int:
        return _env_port("SAGE_ENGINE_PORT", SagePorts.ENGINE)

    @staticmethod
    def edge() -> int:
        return _env_port("SAGE_EDGE_PORT", SagePorts.EDGE)

    @staticmethod
    def control() -> int:
        return _env_port("SAGE_CONTROL_PORT", SagePorts.CONTROL)

    @staticmethod
    def local_engine_base() -> int:
        return _env_port("SAGE_LOCAL_ENGINE_BASE_PORT", SagePorts.LOCAL_ENGINE_BASE)

    @staticmethod
    def node_registry() -> int:
        return _env_port("SAGE_NODE_REGISTRY_PORT", SagePorts.NODE_REGISTRY)


PORTS: Final = SagePorts()
