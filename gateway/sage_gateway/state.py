"""What one running gateway holds: settings, registry, proxy, metrics and discovery."""

from __future__ import annotations

from dataclasses import dataclass

from sage_gateway.discovery import Discovery
from sage_gateway.metrics import GatewayMetrics
from sage_gateway.proxy import Proxy
from sage_gateway.registry import EngineRegistry
from sage_gateway.settings import GatewaySettings


@dataclass
class GatewayState:
    settings: GatewaySettings
    registry: EngineRegistry
    metrics: GatewayMetrics
    proxy: Proxy
    discovery: Discovery
    discovery_error: str | None = None
    """Set when the discovery task stopped: the registry no longer follows its source."""
