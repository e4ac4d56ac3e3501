"""What one running gateway holds: settings, registry, proxy, metrics, discovery and its guard."""

from __future__ import annotations

from dataclasses import dataclass

from sage_gateway.auth.guard import Guard
from sage_gateway.budget import Budget
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
    guard: Guard
    buffers: Budget
    """Bytes held for requests: bodies being read or forwarded, and what parsing one costs."""
    requests: Budget
    """Requests in flight (streams until their last chunk)."""
    keys: Discovery | None = None
    """Where API keys come from (None: auth mode none); the gateway is ready once it synced."""
    discovery_error: str | None = None
    """Set when the discovery task stopped: the registry no longer follows its source."""
